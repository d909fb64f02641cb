"""Resample to the recipe's target size (the lite preset's upscaler).

Lanczos at full float precision, channel by channel; bicubic for comparison. No weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import images
from .context import StageContext

COST = 0.5


@dataclass(frozen=True)
class Params:
    filter: Literal["lanczos", "bicubic"] = "lanczos"


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    th, tw = ctx.target_size
    ctx.cancel.check()
    if params.filter == "lanczos":
        out = images.resize_rgb(rgb, (th, tw))
    else:
        import cv2

        out = np.clip(cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)
    ctx.progress(1, 1)
    return out
