"""Live previews of a running job: when to send one, and how to turn a latent into a small picture.

Two sources. A diffusion stage shows its current x0 estimate a few times per stage (``PreviewSchedule``)
through a fixed linear latent-to-RGB projection (``latent_to_rgb``): no VAE decode and no extra
weights, so a preview costs one small matmul and one device-to-host copy of a thumbnail, only on the
steps that send one. Each model family keeps its own projection factors next to its model code. And
the run itself shows the image as it stands after every stage but the last (``rgb_thumbnail``), so
every recipe of two or more stages has previews (``sends_previews``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .errors import DermisError
from .recipes import Recipe

PREVIEWS_PER_STAGE = 4
MIN_INTERVAL_S = 1.0
MAX_SIDE = 256


class PreviewSchedule:
    """About ``per_stage`` previews spread over a stage's steps, never closer than ``min_interval``
    seconds apart (the last step never sends one: the result follows at once)."""

    def __init__(self, steps: int, per_stage: int = PREVIEWS_PER_STAGE, min_interval: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.steps = steps
        self.every = max(1, -(-steps // max(1, per_stage))) if per_stage > 0 else 0
        self.min_interval = min_interval
        self._clock = clock
        self._last = -float("inf")

    def due(self, step: int) -> bool:
        """``step`` is 1-based (the step that just finished)."""
        if self.every == 0 or step >= self.steps or step % self.every:
            return False
        now = self._clock()
        if now - self._last < self.min_interval:
            return False
        self._last = now
        return True


def rgb_thumbnail(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1] -> uint8 (h, w, 3) with its longer side at most ``max_side``."""
    import cv2

    h, w = rgb.shape[:2]
    k = max(h, w) / max_side
    if k > 1:
        rgb = cv2.resize(np.ascontiguousarray(rgb, dtype=np.float32),
                         (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def sends_previews(recipe: Recipe) -> bool:
    """Whether a run of ``recipe`` sends previews: after each of its enabled stages but the last, or
    from inside a stage whose module declares ``PREVIEWS = True``."""
    from .stages import load_stage

    enabled = [s for s in recipe.stages if s.enabled]
    if len(enabled) >= 2:
        return True
    for spec in enabled:
        try:
            if getattr(load_stage(spec.kind), "PREVIEWS", False):
                return True
        except DermisError:  # a stage this installation lacks sends nothing
            continue
    return False


def latent_to_rgb(latent, factors: Sequence[Sequence[float]], bias: Sequence[float] = (0.0, 0.0, 0.0),
                  max_side: int = MAX_SIDE) -> np.ndarray:
    """(B, C, h, w) latent (first item used) -> uint8 (h', w', 3) thumbnail through ``rgb = latent·F + b``
    (an RGB in [-1, 1]), shrunk by an integer factor until its longer side is at most ``max_side``."""
    import torch
    import torch.nn.functional as F

    x = latent[:1].detach()
    f = torch.as_tensor(factors, dtype=x.dtype, device=x.device)  # (C, 3)
    if f.shape != (x.shape[1], 3):
        raise ValueError(f"latent has {x.shape[1]} channels but the projection is {tuple(f.shape)}")
    k = max(1, -(-max(x.shape[-2:]) // max_side))
    if k > 1:
        x = F.avg_pool2d(x, k, ceil_mode=True)
    rgb = torch.einsum("bchw,cr->bhwr", x, f) + torch.as_tensor(bias, dtype=x.dtype, device=x.device)
    rgb = ((rgb[0] + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return rgb.cpu().numpy()
