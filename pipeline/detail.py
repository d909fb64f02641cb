"""The detail layer: only the fine texture a refinement added, to lay over the source in Grain Merge mode.

``detail = high_pass(result) - high_pass(source) + 0.5`` with ``high_pass(x) = x - gauss(x, sigma)``.
Grain Merge computes ``base + layer - 0.5``, so the detail layer merged over the source gives
``gauss(source) + high_pass(result)``: the source's colours and shading (its low frequencies) with the
result's pores and grain (its high frequencies). The layer's opacity then dials the texture in or out
without touching the colours the retoucher already graded. Where the refinement changed nothing the
layer is mid-grey, which Grain Merge leaves as it is.

``sigma`` is in pixels of the result (the output scale): 8 px keeps pores, fine hair and grain in the
detail and leaves tone and colour to the source.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InvalidParameter

DEFAULT_SIGMA = 8.0  # px at the output scale
MAX_SIGMA = 256.0  # px: wider than any texture; bounds the blur's cost
MID_GREY = 0.5


def check_sigma(sigma: float) -> float:
    """``sigma`` as a float, or InvalidParameter saying what is allowed."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise InvalidParameter(f"the detail layer's blur radius must be a number, not {sigma!r}.") from None
    if not math.isfinite(value) or not 0 < value <= MAX_SIGMA:
        raise InvalidParameter(f"the detail layer's blur radius (sigma) must be above 0 and at most "
                               f"{MAX_SIGMA:g} px, not {sigma}.")
    return value


def gaussian(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 (H, W, C) or (H, W) array, mirrored at the edges."""
    import cv2

    return cv2.GaussianBlur(np.ascontiguousarray(rgb, dtype=np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT)


def detail_layer(result: np.ndarray, source: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """The detail layer of ``result`` over ``source`` (same shape, float32 0..1): 0.5 plus the high
    frequencies the refinement changed, clipped to [0, 1]."""
    if result.shape != source.shape:
        raise InvalidParameter(f"the result is {result.shape} but the source is {source.shape}: the detail "
                               "layer needs the source at the output size.")
    sigma = check_sigma(sigma)
    change = result.astype(np.float32) - source.astype(np.float32)
    # high_pass is linear: high_pass(result) - high_pass(source) = high_pass(result - source)
    out = change - gaussian(change, sigma) + MID_GREY
    return np.clip(out, 0.0, 1.0).astype(np.float32)

