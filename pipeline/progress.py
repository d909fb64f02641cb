"""What a running job reports and is told, defined once: ``Progress`` out, ``CancelToken`` in.

Every stage, sampler and engine reports through one callback shape, ``ProgressFn`` (a ``Progress`` per
call), and checks one token, ``CancelToken.check()``, at every step, tile and stage boundary. The run
fills in the stage and the job's fraction; the daemon maps both to proto events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .errors import Cancelled


class Progress(NamedTuple):
    stage: str  # stage id, or "" for job-level messages (samplers leave it "": the stage fills it in)
    step: int  # steps done in the current tile (1-based once a step finished)
    steps: int
    tile: int = 0  # current tile, 1-based; 0 when the stage does not tile
    tiles: int = 0
    fraction: float = 0.0  # the whole job, 0..1 (filled in by the run)
    message: str = ""
    preview: np.ndarray | None = None  # small uint8 (h, w, 3) RGB preview, when a stage has one
    # where the preview sits in the output canvas (x, y, width, height), filled in by the run
    area: tuple[int, int, int, int] | None = None


ProgressFn = Callable[[Progress], None]


def no_progress(p: Progress) -> None:
    """The ``ProgressFn`` of a caller that does not listen."""


class CancelToken:
    """Cooperative cancellation. ``check()`` raises Cancelled once ``cancel()`` was called.

    ``checkpoint`` (optional) runs at every check: the daemon uses it to let an editor job run at a
    batch job's next step/tile boundary.
    """

    def __init__(self, checkpoint: Callable[[], None] | None = None) -> None:
        self._event = threading.Event()
        self.checkpoint = checkpoint
        self.reason = "The job was cancelled."

    def cancel(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)
        if self.checkpoint is not None:
            self.checkpoint()
            if self._event.is_set():
                raise Cancelled(self.reason)
