"""What SUPIR's samplers tell the caller while they run: one ``Progress`` per tile batch and per step,
and now and then a thumbnail of the current x0 estimate (``Progress.preview``).

The preview is the only device-to-host copy a step may make, and only on the steps the
``PreviewSchedule`` picks (by default 4 per stage, at least 1 s apart).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..previews import PreviewSchedule, latent_to_rgb
from ..progress import Progress, ProgressFn


class StepPreview:
    """x0 thumbnails through a family's fixed latent-to-RGB projection, on the steps ``schedule`` picks."""

    def __init__(self, schedule: PreviewSchedule, factors: Sequence[Sequence[float]],
                 bias: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        self.schedule, self.factors, self.bias = schedule, factors, bias

    def due(self, step: int) -> bool:
        return self.schedule.due(step)

    def __call__(self, x0: torch.Tensor) -> np.ndarray:
        return latent_to_rgb(x0, self.factors, self.bias)


class StepReport:
    """Progress of a sampler run of ``steps`` steps over ``tiles`` tiles (0: untiled)."""

    def __init__(self, progress: ProgressFn | None, preview: StepPreview | None, steps: int, tiles: int) -> None:
        self.progress, self.preview, self.steps, self.tiles = progress, preview, steps, tiles

    def wants_preview(self, k: int) -> bool:
        """Whether step ``k`` (0-based) ends with a preview; ask once per step, before running it."""
        return self.preview is not None and self.preview.due(k + 1)

    def batch_done(self, k: int, batch: list[int]) -> None:
        if self.progress is not None:
            self.progress(Progress("", k, self.steps, batch[-1] + 1, self.tiles))

    def step_done(self, k: int, x0: torch.Tensor | None = None) -> None:
        if self.progress is None:
            return
        thumb = self.preview(x0) if self.preview is not None and x0 is not None else None
        self.progress(Progress("", k + 1, self.steps, self.tiles, self.tiles, preview=thumb))
