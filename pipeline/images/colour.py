"""Colour conversions a decoder needs so that every input reaches the pipeline as sRGB-ish pixels:
CMYK through its ICC profile, and PNG files whose gAMA chunk says another transfer curve.

Each conversion returns a sentence for the user (``Image.notes``): the CLI prints it, a run's
messages carry it, so nobody is surprised that a CMYK file came back as RGB.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms


@lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """An sRGB ICC profile (littleCMS's built-in), embedded in what a conversion produced."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def cmyk_to_srgb(pim: PILImage.Image) -> tuple[PILImage.Image, str]:
    """An 8-bit CMYK image as RGB: through its embedded ICC profile into sRGB (with the rendering intent
    the profile names as its default, perceptual in most press profiles; no black point compensation), or,
    without a usable profile, with Pillow's plain formula (R = 255 - C - K, clipped; likewise G, B),
    which the note says. Pillow cannot ship a CMYK profile (ImageCms makes only sRGB, Lab and XYZ),
    so there is no press profile to fall back on."""
    icc = pim.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            intent = ImageCms.Intent(ImageCms.getDefaultIntent(source))  # perceptual in most press profiles
            rgb = ImageCms.profileToProfile(pim, source, ImageCms.createProfile("sRGB"), outputMode="RGB",
                                            renderingIntent=intent)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
        else:
            assert rgb is not None  # profileToProfile returns the image unless inPlace
            name = (ImageCms.getProfileDescription(source) or "").strip() or "embedded"
            return rgb, f"CMYK image converted to sRGB through its ICC profile ({name})."
    reason = "its ICC profile is unusable" if icc else "it has no ICC profile"
    return pim.convert("RGB"), (
        f"CMYK image converted to RGB without colour management ({reason}): colours are approximate; "
        "for exact colours convert it to RGB with its press profile first.")


def png_gamma(rgb: np.ndarray, gamma: float) -> tuple[np.ndarray, str]:
    """Re-encode pixels a PNG's gAMA chunk declares as ``light ** gamma`` into the sRGB curve the
    pipeline works in. A gamma of about 1/2.2 is sRGB already and is left alone ("" note)."""
    if not np.isfinite(gamma) or gamma <= 0 or abs(gamma * 2.2 - 1.0) < 0.02:
        return rgb, ""
    light = np.power(np.clip(rgb, 0.0, 1.0), 1.0 / gamma)
    encoded = np.where(light <= 0.0031308, light * 12.92, 1.055 * np.power(light, 1 / 2.4) - 0.055)
    return encoded.astype(np.float32), (
        f"PNG with gamma {gamma:.4g} (its gAMA chunk): re-encoded to the sRGB curve.")
