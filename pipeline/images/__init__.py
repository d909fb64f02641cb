"""Decode and encode images, keeping what the user cares about: bit depth, alpha and colour profile.

Inside the pipeline an image is an :class:`Image`: float32 RGB in [0, 1] as encoded (no linearisation),
a separate float32 alpha plane, the source bit depth, its colour model and its ICC profile. Pillow reads
8-bit data, metadata and greyscale 16-bit; OpenCV reads and writes 16-bit RGB(A) PNG/TIFF, which Pillow
silently truncates to 8 bits.
"""

from .decode import DEFAULT_MAX_PIXELS, decode, load, load_mask
from .encode import encode, format_for_path, save
from .image import (
    Image,
    from_array,
    from_tensor,
    resize,
    resize_plane,
    resize_rgb,
    to_array,
    to_tensor,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Image",
    "decode",
    "encode",
    "format_for_path",
    "from_array",
    "from_tensor",
    "load",
    "load_mask",
    "resize",
    "resize_plane",
    "resize_rgb",
    "save",
    "to_array",
    "to_tensor",
]
