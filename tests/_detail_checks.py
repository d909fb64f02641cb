"""The issue's three checks of a detail layer as an editor composites it, shared by the Krita and GIMP
tests (and tests/test_detail.py's library-level version):

1. at 100 % the composite equals the normal result within 2/255 where the source was not clipped;
2. at 0 % it equals the source exactly;
3. the sigma=8 blur of the composite equals the source's within 1/255.

Everything here is numpy written out (no OpenCV, no pipeline code), so it does not reuse what it checks.
"""

from __future__ import annotations

import numpy as np

NORMAL_TOL = 2 / 255
BLUR_TOL = 1 / 255


def blur(x: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """Separable Gaussian, mirrored edges, float64."""
    r = int(np.ceil(4 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.asarray(x, np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xp = np.pad(x, pad, mode="symmetric")
        x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), axis, xp)
    return x


def normal_composite(source: np.ndarray, layer_rgb: np.ndarray, alpha: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    """``source`` (H, W, 3, 0..1) with an RGB layer at ``at`` (x, y) blended in Normal mode by ``alpha``."""
    out = source.astype(np.float64).copy()
    x, y = at
    h, w = layer_rgb.shape[:2]
    under = out[y:y + h, x:x + w]
    out[y:y + h, x:x + w] = under + (layer_rgb - under) * alpha[..., None]
    return out


def errors(source: np.ndarray, composite: np.ndarray, normal: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """The two measured errors (in 0..1 units) of a 100 % detail composite: against the normal result
    where ``inside`` (fully selected, source not clipped), and of its blur against the source's blur."""
    return {"normal": float(np.abs(composite - normal)[inside].max()),
            "blur": float(np.abs(blur(composite) - blur(source)).max())}


def unclipped(source: np.ndarray, margin: float = 3 / 255) -> np.ndarray:
    """Pixels whose colour is not at either end of the range (Grain Merge clips there)."""
    return (source.min(axis=-1) > margin) & (source.max(axis=-1) < 1 - margin)


def judged_pixels(source: np.ndarray, alpha: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    """Where check 1 applies: pixels the layer (``alpha`` at ``at`` = x, y) covers fully, whose
    source colour is not clipped; a bool mask the size of ``source``."""
    inside = np.zeros(source.shape[:2], bool)
    x, y = at
    h, w = alpha.shape
    inside[y:y + h, x:x + w] = alpha == 1
    return inside & unclipped(source)


def check_composites(editor: str, source: np.ndarray, normal: np.ndarray, inside: np.ndarray,
                     full: np.ndarray, zero: np.ndarray, normal_mode: np.ndarray) -> None:
    """The issue's three checks on an editor's composites of the detail layer (100 %, 0 %), plus the
    negative control: the same layer composited in Normal mode must miss both bounds by 10x."""
    assert inside.sum() > 300
    e = errors(source, full, normal, inside)
    print(f"{editor} detail layer: max error vs normal", round(e["normal"] * 255, 2), "/255; blur",
          round(e["blur"] * 255, 2), "/255")
    assert e["normal"] <= NORMAL_TOL and e["blur"] <= BLUR_TOL, e
    assert np.array_equal(zero, source)
    bad = errors(source, normal_mode, normal, inside)
    assert bad["normal"] > 10 * NORMAL_TOL and bad["blur"] > 10 * BLUR_TOL, bad
