"""Decode and encode images, keeping what the user cares about: bit depth, alpha and colour profile.

Inside the pipeline an image is an :class:`Image`: float32 RGB in [0, 1] as encoded (no linearisation),
a separate float32 alpha plane, the source bit depth, its colour model and its ICC profile. Pillow reads
8-bit data, metadata and greyscale 16-bit; OpenCV reads and writes 16-bit RGB(A) PNG/TIFF, which Pillow
silently truncates to 8 bits.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, TiffImagePlugin, UnidentifiedImageError

from .errors import CorruptImage, ImageTooLarge, InvalidParameter, UnsupportedImage
from .files import write_atomic

# A 16K x 16K limit would need 3 GiB per float RGB copy; Pillow's own warning threshold (~89.5 MP,
# about 9459 x 9459) is a sane default that still admits 8192 x 8192 and 8000 x 6000 originals.
DEFAULT_MAX_PIXELS = 89_478_485

_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "WEBP", "BMP"}
_REFUSED_MODES = {
    "CMYK": "CMYK images are not supported; convert the image to RGB first.",
    "YCbCr": "YCbCr images are not supported; convert the image to RGB first.",
    "LAB": "Lab images are not supported; convert the image to RGB first.",
    "HSV": "HSV images are not supported; convert the image to RGB first.",
    "I": "32-bit integer images are not supported; convert to 8- or 16-bit RGB first.",
    "F": "32-bit float images are not supported; convert to 8- or 16-bit RGB first.",
}
_EXT_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True, eq=False)
class Image:
    """Pixels plus the metadata needed to write them back faithfully."""

    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], as encoded (sRGB-ish, not linear)
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1], untouched by processing
    bit_depth: int = 8  # 8 or 16: precision of the source, kept on output where the format allows
    mode: str = "RGB"  # colour model of the source: RGB, RGBA, L or LA
    icc_profile: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow and the editors say it."""
        return self.width, self.height

    def with_rgb(self, rgb: np.ndarray, alpha: np.ndarray | None | bool = True) -> Image:
        """Same metadata, new pixels. ``alpha=True`` keeps the current plane (resized by the caller)."""
        new_alpha = self.alpha if alpha is True else (None if alpha is False else alpha)
        return replace(self, rgb=np.ascontiguousarray(rgb, dtype=np.float32), alpha=new_alpha)


# ----------------------------------------------------------------------------------------------- decode


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
    """Decode encoded image bytes (PNG, JPEG, TIFF, WebP, BMP)."""
    if not data:
        raise CorruptImage("the file is empty (0 bytes).")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            pim = PILImage.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise CorruptImage("not an image Dermis can read (PNG, JPEG, TIFF, WebP, BMP).") from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImageTooLarge(
                f"the image is larger than the {max_pixels:,} pixel limit (decompression bomb guard)."
            ) from None
        except (OSError, SyntaxError, ValueError, struct.error) as e:
            raise CorruptImage(f"the file is damaged ({e}).") from None
    fmt = pim.format or "?"
    if fmt not in _FORMATS:
        raise UnsupportedImage(f"{fmt} files are not supported; use PNG, JPEG, TIFF or WebP.")
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
    try:
        pim.load()  # full decode: catches truncation before we trust any pixel
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as e:
        raise CorruptImage(f"the file is truncated or damaged ({e}).") from None
    if bit_depth == 16 and pim.mode not in ("I;16", "I;16B", "I;16L"):
        arr, mode = _decode_16bit_cv(data, pim.mode)
    else:
        arr, mode = _pil_to_array(pim)
    arr = _apply_orientation(arr, orientation)
    return from_array(arr, mode=mode, icc_profile=icc)


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


# ------------------------------------------------------------------------------------ raw pixel arrays


def from_array(arr: np.ndarray, *, mode: str | None = None, icc_profile: bytes | None = None) -> Image:
    """Wrap raw uint8/uint16 pixels (H, W), (H, W, 1..4) as an Image. Channels: L, LA, RGB, RGBA."""
    if arr.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        depth, scale = 16, 65535.0
    else:
        raise UnsupportedImage(f"raw pixels must be uint8 or uint16, not {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise UnsupportedImage(f"raw pixels must have 1-4 channels, got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CorruptImage(f"the image has an empty size ({arr.shape[1]}x{arr.shape[0]}).")
    channels = arr.shape[2]
    mode = mode or {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    f = arr.astype(np.float32) / scale
    colour = f[..., :3] if channels >= 3 else np.repeat(f[..., :1], 3, axis=2)
    alpha = f[..., channels - 1] if channels in (2, 4) else None
    return Image(
        rgb=np.ascontiguousarray(colour),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=depth,
        mode=mode,
        icc_profile=icc_profile,
    )


def to_array(img: Image, *, bit_depth: int | None = None, mode: str | None = None) -> np.ndarray:
    """Quantise to uint8/uint16 (H, W, C) in the image's colour model (or ``mode``)."""
    depth = bit_depth or img.bit_depth
    mode = mode or img.mode
    if depth not in (8, 16):
        raise InvalidParameter(f"bit depth must be 8 or 16, not {depth}.")
    maxv, dtype = (255.0, np.uint8) if depth == 8 else (65535.0, np.uint16)
    if mode in ("L", "LA"):
        # Rec. 601 luma, as Pillow's convert("L") does
        colour = (img.rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    else:
        colour = img.rgb
    planes = [colour]
    if mode in ("LA", "RGBA"):
        a = img.alpha if img.alpha is not None else np.ones(img.rgb.shape[:2], np.float32)
        planes.append(a[..., None])
    out = np.concatenate(planes, axis=2) if len(planes) > 1 else colour
    return np.clip(np.rint(out * maxv), 0, maxv).astype(dtype)


def load_mask(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A selection mask file (greyscale, or RGB: its luma; white = process) -> float32 (H, W) 0..1."""
    m = load(path, max_pixels=max_pixels)
    return (m.rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- encode


def format_for_path(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    if ext not in _EXT_FORMAT:
        raise InvalidParameter(
            f"cannot write '{ext or Path(path).name}' files; use .png, .tif, .jpg or .webp."
        )
    return _EXT_FORMAT[ext]


def encode(img: Image, fmt: str = "PNG", *, bit_depth: int | None = None) -> bytes:
    """Encode to PNG/TIFF (8 or 16 bit), JPEG or WebP (8 bit). The ICC profile goes along."""
    fmt = fmt.upper()
    depth = bit_depth or img.bit_depth
    if fmt in ("JPEG", "WEBP"):
        depth = 8
    mode = img.mode
    if fmt == "JPEG" and mode in ("RGBA", "LA"):
        mode = mode[:-1]  # JPEG has no alpha channel
    if depth == 16 and mode == "LA":
        mode = "RGBA"  # neither Pillow nor OpenCV writes 16-bit grey+alpha: keep depth and alpha
    arr = to_array(img, bit_depth=depth, mode=mode)
    if depth == 16 and mode in ("RGB", "RGBA"):
        return _encode_16bit_colour(arr, fmt, img.icc_profile)
    if depth == 16:  # greyscale 16-bit: Pillow's I;16
        pim = PILImage.fromarray(np.ascontiguousarray(arr[..., 0]))
    else:
        pim = PILImage.fromarray(arr if arr.shape[2] > 1 else np.ascontiguousarray(arr[..., 0]))
    buf = io.BytesIO()
    opts: dict[str, object] = {}
    if img.icc_profile:
        opts["icc_profile"] = img.icc_profile
    if fmt == "JPEG":
        opts.update(quality=95, subsampling=0)  # 4:4:4: chroma subsampling smears fine skin detail
    elif fmt == "WEBP":
        opts.update(quality=95, method=4)
    elif fmt == "TIFF":
        opts.update(compression="tiff_adobe_deflate")
    elif fmt == "PNG":
        opts.update(compress_level=6)
    pim.save(buf, format=fmt, **opts)
    return buf.getvalue()


def _encode_16bit_colour(arr: np.ndarray, fmt: str, icc: bytes | None) -> bytes:
    if fmt == "TIFF":
        import tifffile

        buf = io.BytesIO()
        extratags = [(34675, 7, None, icc, True)] if icc else []  # 34675 = InterColorProfile
        tifffile.imwrite(
            buf, arr, photometric="rgb", compression="zlib", extratags=extratags, metadata=None
        )
        return buf.getvalue()
    import cv2

    bgr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise CorruptImage("OpenCV could not encode the 16-bit PNG.")
    data = enc.tobytes()
    return _png_insert_iccp(data, icc) if icc else data


def _png_insert_iccp(png: bytes, icc: bytes) -> bytes:
    """Insert an iCCP chunk after IHDR (OpenCV cannot write one)."""
    body = b"ICC profile\x00\x00" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body
    chunk += struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature + length + type + IHDR data + crc
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def save(img: Image, path: str | os.PathLike[str], *, bit_depth: int | None = None) -> Path:
    """Encode by the file extension and write atomically."""
    return write_atomic(path, encode(img, format_for_path(path), bit_depth=bit_depth))


# ----------------------------------------------------------------------------------------------- resize


def resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-resize a float32 (H, W) plane to (height, width), clipped to [0, 1]."""
    h, w = size
    if plane.shape == (h, w):
        return plane.astype(np.float32, copy=True)
    pim = PILImage.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    out = np.asarray(pim.resize((w, h), PILImage.Resampling.LANCZOS), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos-resize float32 (H, W, C) to (height, width), channel by channel at full precision."""
    return np.stack([resize_plane(rgb[..., c], size) for c in range(rgb.shape[2])], axis=2)


def resize(img: Image, size: tuple[int, int]) -> Image:
    """Resize colour and alpha to (height, width)."""
    alpha = None if img.alpha is None else resize_plane(img.alpha, size)
    return img.with_rgb(resize_rgb(img.rgb, size), alpha=alpha)


# ------------------------------------------------------------------------------------ torch conversion


def to_tensor(rgb: np.ndarray, device=None, dtype=None):
    """(H, W, 3) float32 -> torch (1, 3, H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    return t.to(device=device or "cpu", dtype=dtype or torch.float32)


def from_tensor(t) -> np.ndarray:
    """torch (1, 3, H, W) -> (H, W, 3) float32 numpy, clipped to [0, 1]."""
    import torch

    arr = t.detach().to(device="cpu", dtype=torch.float32)[0].clamp(0, 1).permute(1, 2, 0)
    return np.ascontiguousarray(arr.numpy())
