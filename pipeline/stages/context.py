"""What a stage gets besides the pixels and its Params: ``StageContext``, the ``ctx`` of ``run``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.cache import ModelCache
from ..models.weights import WeightLocator
from ..progress import CancelToken, Progress, ProgressFn, no_progress

log = logging.getLogger("dermis.pipeline")


@dataclass
class StageContext:
    stage_id: str
    seed: int  # already mixed with the stage id: use it directly
    device: torch.device
    dtype: torch.dtype
    cancel: CancelToken
    models: ModelCache
    weights: dict[str, Path]  # weight name -> Path, resolved before the job started
    target_size: tuple[int, int]  # (height, width) the recipe's output has for this crop
    mask: np.ndarray | None  # the job's selection on the stage input (crop), float32 0..1, or None
    locator: WeightLocator
    on_progress: ProgressFn = field(repr=False, default=no_progress)  # the run's: fills in the job fraction
    used: dict[str, Any] = field(default_factory=dict)  # memory settings as resolved (``using``)

    def using(self, **settings: Any) -> None:
        """Record the memory settings this attempt really uses ("auto" resolved) and the phase it is in
        (``phase="sampling"``): if it runs out of memory, ``pipeline.memory_policy`` moves on from these."""
        self.used.update(settings)

    def report(self, p: Progress) -> None:
        """A ``ProgressFn`` to hand to samplers and engines: their ``Progress``, as this stage's."""
        self.on_progress(p._replace(stage=self.stage_id))

    def progress(self, step: int, steps: int, *, tile: int = 0, tiles: int = 0, message: str = "",
                 preview: np.ndarray | None = None) -> None:
        self.report(Progress(self.stage_id, step, steps, tile, tiles, message=message, preview=preview))

    def log(self, message: str) -> None:
        log.info("%s: %s", self.stage_id, message)
        self.report(Progress(self.stage_id, 0, 0, message=message))
