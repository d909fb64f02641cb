"""Regions and masks: what part of the image a job works on, and how the result goes back.

A job names a rectangle, a soft mask (same size as the image, 0..1), both, or neither (whole image).
The pipeline processes the bounding box plus ``context`` pixels of surroundings (so models see what is
around the face), then blends the result back through the mask, feathered so no edge shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import InvalidParameter, quoted


@dataclass(frozen=True)
class Region:
    """A rectangle in image pixels: x, y of the top-left corner, width, height."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Region:
        """'x,y,w,h' as the CLI takes it."""
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise InvalidParameter(f"region must be 'x,y,width,height' in pixels, not {quoted(text)}.") from None
        return cls(x, y, w, h)

    def clipped(self, width: int, height: int) -> Region:
        """Intersect with the image; a selection hanging off the canvas edge keeps its inside part."""
        if self.w <= 0 or self.h <= 0:
            raise InvalidParameter(f"region {self.w}x{self.h} is empty.")
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        if x1 <= x0 or y1 <= y0:
            raise InvalidParameter(
                f"region {self.x},{self.y},{self.w},{self.h} lies outside the {width}x{height} image."
            )
        return Region(x0, y0, x1 - x0, y1 - y0)

    def padded(self, context: int, width: int, height: int) -> Region:
        x0, y0 = max(0, self.x - context), max(0, self.y - context)
        x1, y1 = min(width, self.x + self.w + context), min(height, self.y + self.h + context)
        return Region(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class WorkArea:
    """Where a job works: ``crop`` (region + context) and the blend mask inside it."""

    crop: Region
    region: Region
    mask: np.ndarray | None  # float32 (crop.h, crop.w) in [0,1]; None = the whole crop counts
    whole_image: bool


def mask_bbox(mask: np.ndarray, threshold: float = 1.0 / 512) -> Region | None:
    ys, xs = np.nonzero(mask > threshold)
    if len(ys) == 0:
        return None
    return Region(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def work_area(
    width: int,
    height: int,
    *,
    region: Region | None = None,
    mask: np.ndarray | None = None,
    context: int = 64,
) -> WorkArea:
    """Decide the crop and the blend mask for a job on a width x height image."""
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (height, width):
            raise InvalidParameter(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}."
            )
        if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise InvalidParameter("mask values must be between 0 and 1.")
    if region is not None:
        region = region.clipped(width, height)
    if mask is not None:
        box = mask_bbox(mask if region is None else _restrict(mask, region))
        if box is None:
            raise InvalidParameter("the selection mask is empty: nothing to process.")
        region = box
    if region is None or (region.w, region.h) == (width, height) and mask is None:
        full = Region(0, 0, width, height)
        return WorkArea(crop=full, region=full, mask=None, whole_image=True)
    crop = region.padded(context, width, height)
    if mask is not None:
        m = _restrict(mask, region)[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]
    else:
        m = np.zeros((crop.h, crop.w), np.float32)
        m[region.y - crop.y : region.y - crop.y + region.h, region.x - crop.x : region.x - crop.x + region.w] = 1
    return WorkArea(crop=crop, region=region, mask=np.ascontiguousarray(m), whole_image=False)


def _restrict(mask: np.ndarray, region: Region) -> np.ndarray:
    out = np.zeros_like(mask)
    ys, xs = slice(region.y, region.y + region.h), slice(region.x, region.x + region.w)
    out[ys, xs] = mask[ys, xs]
    return out


EXACT_SIGMA = 16.0  # px: blurs up to this sigma are computed exactly (every default feather is)
BAND_ROWS = 1024  # rows blurred between two cancel checks


def feather(mask: np.ndarray, radius: float, *, keep_border: tuple[bool, bool, bool, bool],
            check: Callable[[], None] | None = None) -> np.ndarray:
    """Soften a mask's edge with a Gaussian of sigma = radius / 2.

    ``keep_border`` = (top, bottom, left, right): sides where the crop touches the image border, where
    the mask must not fade (there is nothing beyond to blend with). On the other sides the mask is
    forced to 0 at the crop edge so the result meets the untouched image without a step.

    The cost is bounded whatever the radius: a sigma above ``EXACT_SIGMA`` is blurred on a grid
    reduced so that it becomes <= EXACT_SIGMA there, then scaled back (a Gaussian that wide is smooth
    to well under 1/255 between grid points). The blur runs in bands of rows with ``check()`` (a
    cancel check) between them.
    """
    if not np.isfinite(radius):
        raise InvalidParameter(f"the feather radius must be a finite number, not {radius}.")
    if radius <= 0:
        return mask.astype(np.float32, copy=True)
    import cv2

    check = check or (lambda: None)
    h, w = mask.shape
    sigma = radius / 2.0
    factor = max(1, int(np.ceil(sigma / EXACT_SIGMA)))
    m = mask.astype(np.float32)
    if factor > 1:
        small = (max(1, round(w / factor)), max(1, round(h / factor)))
        m = cv2.resize(m, small, interpolation=cv2.INTER_AREA)
        sigma = sigma * m.shape[0] / h  # the grid's own scale (rounding can differ from ``factor``)
    pad = int(np.ceil(3 * sigma))
    # replicate at image borders (no fade there), zeros elsewhere (fade towards the untouched image)
    top, bottom, left, right = keep_border
    m = np.pad(m, pad, mode="edge")
    if not top:
        m[:pad] = 0
    if not bottom:
        m[-pad:] = 0
    if not left:
        m[:, :pad] = 0
    if not right:
        m[:, -pad:] = 0
    out = _banded_blur(m, sigma, pad, check)[pad:-pad, pad:-pad]
    if factor > 1:
        check()
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    out[out < 1.0 / 1024] = 0.0
    out[out > 1.0 - 1.0 / 1024] = 1.0
    # the edge of the crop inside the image must be exactly 0
    if not top:
        out[0, :] = 0
    if not bottom:
        out[-1, :] = 0
    if not left:
        out[:, 0] = 0
    if not right:
        out[:, -1] = 0
    return np.ascontiguousarray(out, dtype=np.float32)


def _banded_blur(m: np.ndarray, sigma: float, pad: int, check: Callable[[], None]) -> np.ndarray:
    """cv2.GaussianBlur (kernel 2*pad+1, replicated border) band by band, ``check()`` before each.

    Each band is blurred with ``pad`` rows of its neighbours around it, which is all the kernel
    reaches, so the bands put together equal one blur of the whole plane exactly."""
    import cv2

    k = 2 * pad + 1
    out = np.empty_like(m)
    for r0 in range(0, m.shape[0], BAND_ROWS):
        check()
        r1 = min(m.shape[0], r0 + BAND_ROWS)
        a, b = max(0, r0 - pad), min(m.shape[0], r1 + pad)
        band = cv2.GaussianBlur(m[a:b], (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
        out[r0:r1] = band[r0 - a : r0 - a + (r1 - r0)]
    return out


def composite(base: np.ndarray, top: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """base + (top - base) * mask, for (H, W, C) arrays and an (H, W) mask."""
    m = mask[..., None] if base.ndim == 3 else mask
    return (base + (top - base) * m).astype(np.float32)
