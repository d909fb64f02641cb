"""Skin micro-texture synthesis (lite preset): pores and fine relief where the skin mask says skin.

Not a model: seeded band-pass noise (difference of Gaussians, ~1 px features at the output resolution)
plus sparse dark pore dots, scaled by the skin mask and by a midtone weight (no texture painted into
deep shadows or blown highlights), added to luminance only so colours do not shift. Non-skin areas are
left as the resample made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameter
from ..skin import skin_mask
from .context import StageContext

COST = 0.5


@dataclass(frozen=True)
class Params:
    strength: float = 0.035  # amplitude in luminance units (0..1 scale)
    pore_size: float = 1.0  # feature size in output pixels
    pore_density: float = 0.012  # fraction of skin pixels that get a pore
    face_only: bool = False  # restrict to faces found by the Haar cascade

    def validate(self) -> None:
        if not 0 <= self.strength <= 0.5:
            raise InvalidParameter("skin_texture.strength must be between 0 and 0.5.")
        if not 0.3 <= self.pore_size <= 8:
            raise InvalidParameter("skin_texture.pore_size must be between 0.3 and 8 px.")
        if not 0 <= self.pore_density <= 0.2:
            raise InvalidParameter("skin_texture.pore_density must be between 0 and 0.2.")


def texture_field(shape: tuple[int, int], params: Params, seed: int) -> np.ndarray:
    """Zero-mean, unit-std texture: fine relief plus pore dots."""
    import cv2

    rng = np.random.default_rng(seed)
    s = params.pore_size
    noise = rng.standard_normal(shape, dtype=np.float32)
    relief = cv2.GaussianBlur(noise, (0, 0), 0.6 * s) - cv2.GaussianBlur(noise, (0, 0), 1.8 * s)
    relief /= relief.std() + 1e-8
    pores = (rng.random(shape, dtype=np.float32) < params.pore_density).astype(np.float32)
    pores = cv2.GaussianBlur(pores, (0, 0), 0.8 * s)
    pores /= pores.std() + 1e-8
    tex = 0.75 * relief - 0.55 * pores
    tex -= tex.mean()
    return (tex / (tex.std() + 1e-8)).astype(np.float32)


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    ctx.cancel.check()
    mask = skin_mask(rgb, face_only=params.face_only)
    if ctx.mask is not None:
        mask = mask * ctx.mask
    ctx.progress(1, 3, message="skin mask")
    ctx.cancel.check()
    tex = texture_field(rgb.shape[:2], params, ctx.seed)
    ctx.progress(2, 3, message="texture")
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    midtones = np.clip(4 * y * (1 - y), 0.25, 1.0)
    delta = params.strength * mask * midtones * tex
    out = np.clip(rgb + delta[..., None], 0, 1).astype(np.float32)
    ctx.progress(3, 3)
    return out
