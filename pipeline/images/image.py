"""An image inside the pipeline: pixels plus what is needed to write them back, and the array, resize and
tensor conversions every stage uses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from ..errors import CorruptImage, InvalidParameter, UnsupportedImage

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class Image:
    """Pixels plus the metadata needed to write them back faithfully."""

    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], as encoded (sRGB-ish, not linear)
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1], untouched by processing
    bit_depth: int = 8  # 8 or 16: precision of the source, kept on output where the format allows
    mode: str = "RGB"  # colour model of the source: RGB, RGBA, L or LA
    icc_profile: bytes | None = None
    notes: tuple[str, ...] = ()  # what decoding changed (a CMYK file converted, a TIFF's first page)

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


def to_tensor(rgb: np.ndarray, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """(H, W, 3) float32 -> torch (1, 3, H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    return t.to(device=device or "cpu", dtype=dtype or torch.float32)


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """torch (1, 3, H, W) -> (H, W, 3) float32 numpy, clipped to [0, 1]."""
    import torch

    arr = t.detach().to(device="cpu", dtype=torch.float32)[0].clamp(0, 1).permute(1, 2, 0)
    return np.ascontiguousarray(arr.numpy())
