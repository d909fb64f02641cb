"""Film grain, seeded: the workflow's "Add Grain" step, reproducible.

Follows spacepxl's BetterFilmGrain / LayerStyle AddGrain (the usual ComfyUI nodes) in spirit: noise
at 1/size resolution, a little clumping, colour mixed towards mono by ``saturation``, resized to the
image; but additive (not screen-like), weighted towards midtones, optionally towards skin, and seeded
from the job seed instead of the wall clock. Grain before Flux makes the model treat it as texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameter
from ..skin import skin_mask
from .context import StageContext

COST = 0.3


@dataclass(frozen=True)
class Params:
    strength: float = 0.03  # standard deviation of the grain in 0..1 units at midtones
    size: float = 1.0  # grain size in pixels
    saturation: float = 0.0  # 0 = monochrome (luminance) grain, 1 = independent per channel
    luminance_weight: float = 1.0  # 0 = same everywhere, 1 = strongest in midtones
    skin_weight: float = 0.0  # 0 = everywhere, 1 = only on skin

    def validate(self) -> None:
        for name, lo, hi in (("strength", 0, 0.5), ("size", 0.25, 16), ("saturation", 0, 1),
                             ("luminance_weight", 0, 1), ("skin_weight", 0, 1)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise InvalidParameter(f"grain.{name} must be between {lo} and {hi}, not {v}.")


def grain_field(shape: tuple[int, int], params: Params, seed: int) -> np.ndarray:
    """(H, W, 3) unit-std grain."""
    import cv2

    h, w = shape
    gh, gw = max(1, round(h / params.size)), max(1, round(w / params.size))
    rng = np.random.default_rng(seed)
    mono = rng.standard_normal((gh, gw), dtype=np.float32)
    colour = rng.standard_normal((gh, gw, 3), dtype=np.float32)
    g = (1 - params.saturation) * mono[..., None] + params.saturation * colour
    g = cv2.GaussianBlur(g, (0, 0), 0.5)  # film grain clumps; pure white noise looks digital
    if (gh, gw) != (h, w):
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
    g = g.reshape(h, w, 3)
    return (g / (g.std() + 1e-8)).astype(np.float32)


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    ctx.cancel.check()
    if params.strength == 0:
        ctx.progress(1, 1)
        return rgb
    g = grain_field(rgb.shape[:2], params, ctx.seed)
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    weight = (1 - params.luminance_weight) + params.luminance_weight * np.clip(4 * y * (1 - y), 0, 1)
    if params.skin_weight > 0:
        weight = weight * ((1 - params.skin_weight) + params.skin_weight * skin_mask(rgb))
    out = np.clip(rgb + params.strength * weight[..., None] * g, 0, 1).astype(np.float32)
    ctx.progress(1, 1)
    return out
