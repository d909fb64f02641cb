"""Reading image files: PNG, JPEG, TIFF, WebP, BMP, AVIF (and HEIC with the optional pi-heif), 8 or 16
bit, with alpha, EXIF orientation and the ICC profile; every bad file a CorruptImage / UnsupportedImage /
ImageTooLarge naming it.

Inputs people really have are converted, and the image's ``notes`` say so: CMYK JPEG/TIFF to sRGB
through its ICC profile (colour.py), float TIFF to 16 bit and the first page of a multi-page TIFF
(tiff.py), PNG with a gAMA chunk to the sRGB curve.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, TiffImagePlugin, UnidentifiedImageError

from ..errors import CorruptImage, ImageTooLarge, InvalidParameter, UnsupportedImage
from . import colour
from .image import Image, from_array
from .tiff import decode_tiff, is_tiff

# A 16K x 16K limit would need 3 GiB per float RGB copy; Pillow's own warning threshold (~89.5 MP,
# about 9459 x 9459) is a sane default that still admits 8192 x 8192 and 8000 x 6000 originals.
DEFAULT_MAX_PIXELS = 89_478_485

_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "WEBP", "BMP", "AVIF", "HEIF"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_READABLE = "PNG, JPEG, TIFF, WebP, BMP, AVIF, HEIC"
_REFUSED_MODES = {
    "YCbCr": "YCbCr images are not supported; convert the image to RGB first.",
    "LAB": "Lab images are not supported; convert the image to RGB first.",
    "HSV": "HSV images are not supported; convert the image to RGB first.",
    "I": "32-bit integer images are not supported; convert to 8- or 16-bit RGB first.",
    "F": "32-bit float images are not supported; convert to 8- or 16-bit RGB first.",
}

ImageFile.LOAD_TRUNCATED_IMAGES = False
# What Pillow raises on damaged files: its own OSError/SyntaxError, and, from deep inside its parsers,
# whatever a bad value leads to (the fuzzers found RuntimeError from the AVIF decoder, TypeError and
# KeyError from TIFF page chains). Inside Pillow that is the file's fault, never a Dermis bug.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, RuntimeError, TypeError, KeyError, IndexError, EOFError,
                  struct.error, zlib.error)


def _why(e: Exception) -> str:
    return str(e) if isinstance(e, (OSError, SyntaxError, ValueError)) else f"{type(e).__name__}: {e}"


def load(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file. Raises CorruptImage / UnsupportedImage / ImageTooLarge with the file name."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidParameter(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise InvalidParameter(f"{path} is a folder, not an image file.") from None
    except OSError as e:
        raise CorruptImage(f"{path}: cannot be read ({e.strerror or e}).") from None
    try:
        return decode(data, max_pixels=max_pixels)
    except (CorruptImage, UnsupportedImage, ImageTooLarge) as e:
        raise type(e)(f"{path.name}: {e}") from None


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode encoded image bytes (PNG, JPEG, TIFF, WebP, BMP, AVIF, HEIC)."""
    if not data:
        raise CorruptImage("the file is empty (0 bytes).")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        _register_heif()
    with warnings.catch_warnings():
        # Pillow warns about damaged metadata it skips (corrupt EXIF, odd TIFF tags): the pixels
        # decode or an error says why, so those warnings carry nothing for the user
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            return _decode(data, max_pixels)
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):  # a later page, say
            raise ImageTooLarge(
                f"the image is larger than the {max_pixels:,} pixel limit (decompression bomb guard)."
            ) from None


def _decode(data: bytes, max_pixels: int) -> Image:
    """decode() under its warning filters."""
    try:
        pim = PILImage.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if is_tiff(data):  # float or other samples Pillow does not know
            return _from_tiff(data, max_pixels)
        raise CorruptImage(f"not an image Dermis can read ({_READABLE}).") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageTooLarge(
            f"the image is larger than the {max_pixels:,} pixel limit (decompression bomb guard)."
        ) from None
    except _PILLOW_ERRORS as e:
        raise CorruptImage(f"the file is damaged ({_why(e)}).") from None
    fmt = pim.format or "?"
    if fmt not in _FORMATS:
        raise UnsupportedImage(f"{fmt} files are not supported; use PNG, JPEG, TIFF or WebP.")
    if fmt == "TIFF" and pim.mode == "F":
        return _from_tiff(data, max_pixels)
    w, h = pim.size
    if w <= 0 or h <= 0:
        raise CorruptImage(f"the image has an empty size ({w}x{h}).")
    if w * h > max_pixels:
        raise ImageTooLarge(
            f"the image is {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}."
        )
    if pim.mode in _REFUSED_MODES:
        raise UnsupportedImage(_REFUSED_MODES[pim.mode])
    icc = pim.info.get("icc_profile") or None
    orientation = _exif_orientation(pim)
    bit_depth = _bit_depth(pim, data)
    notes = []
    pages = _page_count(pim) if fmt == "TIFF" else 1
    if pages > 1:
        notes.append(f"the TIFF has {pages} pages; the first one was used.")
    try:
        pim.load()  # full decode: catches truncation before we trust any pixel
    except _PILLOW_ERRORS as e:
        raise CorruptImage(f"the file is truncated or damaged ({_why(e)}).") from None
    if pim.mode == "CMYK":
        pim, note = colour.cmyk_to_srgb(pim)
        notes.append(note + (" (16-bit CMYK is read at 8 bits.)" if bit_depth == 16 else ""))
        icc, bit_depth = colour.srgb_profile(), 8
    if bit_depth == 16 and pim.mode not in ("I;16", "I;16B", "I;16L"):
        arr, mode = _decode_16bit_cv(data, pim.mode)
    else:
        arr, mode = _pil_to_array(pim)
    arr = _apply_orientation(arr, orientation)
    image = from_array(arr, mode=mode, icc_profile=icc)
    gamma = pim.info.get("gamma") if fmt == "PNG" and icc is None and "srgb" not in pim.info else None
    if gamma is not None:
        rgb, note = colour.png_gamma(image.rgb, float(gamma))
        if note:
            image, notes = image.with_rgb(rgb), [*notes, note]
    return replace(image, notes=tuple(notes)) if notes else image


def _page_count(pim: PILImage.Image) -> int:
    """A TIFF's pages (Pillow walks the chain of IFDs to count them: a damaged one raises)."""
    try:
        return int(getattr(pim, "n_frames", 1))
    except _PILLOW_ERRORS as e:
        raise CorruptImage(f"the TIFF's list of pages is damaged ({_why(e)}).") from None


def _from_tiff(data: bytes, max_pixels: int) -> Image:
    arr, mode, icc, orientation, notes = decode_tiff(data, max_pixels)
    image = from_array(_apply_orientation(arr, orientation), mode=mode, icc_profile=icc)
    return replace(image, notes=tuple(notes))


def _register_heif() -> None:
    """HEIC/HEIF through pi-heif (decode only; an optional dependency, `pip install 'dermis[heic]'`)."""
    try:
        import pi_heif
    except ImportError:
        raise UnsupportedImage("HEIC/HEIF files need the optional package pi-heif "
                               "(pip install 'dermis[heic]'); or convert the image to PNG or JPEG.") from None
    pi_heif.register_heif_opener()


def _bit_depth(pim: PILImage.Image, data: bytes) -> int:
    if pim.mode.startswith("I;16"):
        return 16
    if pim.format == "PNG" and len(data) > 24:
        return 16 if data[24] == 16 else 8
    if isinstance(pim, TiffImagePlugin.TiffImageFile):
        bits = pim.tag_v2.get(258)  # BitsPerSample
        if isinstance(bits, tuple):
            bits = max(bits)
        return 16 if bits == 16 else 8
    return 8


def _decode_16bit_cv(data: bytes, pil_mode: str) -> tuple[np.ndarray, str]:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise CorruptImage("the 16-bit image data could not be decoded.")
    if arr.ndim == 2:
        return arr, "L"
    if arr.shape[2] == 3:
        return arr[..., ::-1].copy(), "RGB"
    rgba = arr[..., [2, 1, 0, 3]].copy()
    if pil_mode in ("LA", "PA"):
        return rgba[..., [0, 3]].copy(), "LA"
    return rgba, "RGBA"


def _pil_to_array(pim: PILImage.Image) -> tuple[np.ndarray, str]:
    mode = pim.mode
    if mode.startswith("I;16"):
        return np.asarray(pim.convert("I;16")).astype(np.uint16), "L"
    if mode == "1":
        pim, mode = pim.convert("L"), "L"
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in pim.info
        pim = pim.convert("RGBA" if has_alpha else "RGB")
        mode = pim.mode
    elif mode == "RGBX":
        pim, mode = pim.convert("RGB"), "RGB"
    elif mode == "La":
        pim, mode = pim.convert("LA"), "LA"
    elif mode == "RGBa":
        pim, mode = pim.convert("RGBA"), "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise UnsupportedImage(f"images in colour mode {mode} are not supported; convert to RGB first.")
    return np.asarray(pim), mode


def _exif_orientation(pim: PILImage.Image) -> int:
    try:
        return int(pim.getexif().get(274, 1))
    except Exception:  # broken EXIF must not make an otherwise good image unreadable
        return 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def load_mask(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A selection mask file (greyscale, or RGB: its luma; white = process) -> float32 (H, W) 0..1."""
    m = load(path, max_pixels=max_pixels)
    return (m.rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
