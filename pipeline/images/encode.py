"""Writing image files: PNG and TIFF in 8 or 16 bit, JPEG and WebP in 8 bit, alpha and ICC profile kept,
written atomically (``pipeline.files``)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..errors import CorruptImage, InvalidParameter
from ..files import write_atomic
from .image import Image, to_array

_EXT_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


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
