"""TIFF files Pillow cannot read (float samples, half floats, odd layouts), read with tifffile.

Only the first page (image) of a file is used; a file with more says so in a note. Float samples are
taken as 0..1 (values beyond are clipped, which the note says) and become 16-bit pixels.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import CorruptImage, ImageTooLarge, UnsupportedImage


def is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def decode_tiff(data: bytes, max_pixels: int) -> tuple[np.ndarray, str, bytes | None, int, list[str]]:
    """(uint8/uint16 pixels (H, W, C), mode, ICC profile, EXIF orientation, notes) of the first page."""
    import tifffile

    notes: list[str] = []
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = len(tif.pages)
            page = tif.pages.first
            h, w = int(page.imagelength), int(page.imagewidth)
            if w * h > max_pixels:
                raise ImageTooLarge(f"the image is {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}.")
            samples, bits = int(page.samplesperpixel), int(page.bitspersample)
            if not 1 <= samples <= 4 or bits not in (8, 16, 32, 64):  # before any pixel is read
                raise UnsupportedImage(f"TIFF pages with {samples} samples of {bits} bits are not supported; "
                                       "convert the image to 8- or 16-bit RGB first.")
            arr = page.asarray()
            axes = page.axes
            photometric = int(page.photometric)
            icc_tag = page.tags.get(34675)  # InterColorProfile
            icc = bytes(icc_tag.value) if icc_tag is not None else None
            orientation_tag = page.tags.get(274)  # Orientation, as EXIF
            orientation = int(orientation_tag.value) if orientation_tag is not None else 1
    except (ImageTooLarge, UnsupportedImage, MemoryError):
        raise
    except Exception as e:  # tifffile raises many kinds on damaged files
        raise CorruptImage(f"the TIFF file is damaged or not one Dermis can read ({type(e).__name__}: {e}).") from None
    if pages > 1:
        notes.append(f"the TIFF has {pages} pages; the first one was used.")
    arr = _yxs(arr, axes)
    if photometric not in (1, 2):  # MINISBLACK, RGB; CMYK and the rest Pillow reads or nothing does
        raise UnsupportedImage(f"TIFF files with photometric interpretation {photometric} are not supported; "
                               "convert the image to RGB first.")
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise UnsupportedImage(f"TIFF files with {channels} samples per pixel are not supported.")
    arr = _to_integer(arr, notes)
    return arr, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels], icc, orientation, notes


def _yxs(arr: np.ndarray, axes: str) -> np.ndarray:
    """The page's array as (height, width, samples)."""
    keep = [a for a in axes if a in "YXS"]
    if len(keep) != arr.ndim or "Y" not in keep or "X" not in keep:
        raise UnsupportedImage(f"TIFF pages laid out as {axes!r} are not supported.")
    if "S" not in keep:
        return arr[..., None]
    return np.moveaxis(arr, [keep.index("Y"), keep.index("X"), keep.index("S")], [0, 1, 2])


def _to_integer(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    if arr.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        f = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        clipped = bool((f < 0).any() or (f > 1).any())
        notes.append(f"{arr.dtype.itemsize * 8}-bit float TIFF read as 16-bit"
                     + (" (values outside 0..1 clipped)." if clipped else "."))
        return np.round(np.clip(f, 0.0, 1.0) * 65535.0).astype(np.uint16)
    raise UnsupportedImage(f"{arr.dtype.itemsize * 8}-bit integer images are not supported; convert to 8- or "
                           "16-bit RGB first.")
