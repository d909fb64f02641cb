"""Who runs a watch-folder job: in this process (``dermis watch``) or the daemon's queue.

The folder manager only needs ``runner.run(job, cancel) -> Image``; everything it does around a job
(claiming, journal, outputs, archive) is the same either way. Standalone, ``LocalRunner`` calls
``pipeline.run`` with one long-lived ModelCache so weights load once per batch, not once per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pipeline
from pipeline import CancelToken, Image, images

from .settings import Settings


@dataclass(frozen=True)
class WatchJob:
    path: Path  # the claimed file in the work folder
    name: str  # the name it was dropped with (for messages)
    settings: Settings
    seed: int  # fixed when the file was claimed (its settings' seed, or one from its content hash)
    folder: str  # the watched folder, for logs and the daemon's job list


class JobRunner(Protocol):
    def run(self, job: WatchJob, cancel: CancelToken) -> Image:
        """Process one claimed file and return the full result image; raise DermisError on failure.
        A runner may also have ``capacity() -> int``: how many jobs the folder keeps in flight (1
        without it); jobs then run on several threads at once."""
        ...


class LocalRunner:
    """Runs jobs right here with ``pipeline.run``."""

    def __init__(self, config: pipeline.Config | None = None, *, device: str | None = None,
                 models: pipeline.ModelCache | None = None) -> None:
        self.config = config or pipeline.Config()
        self.device = device
        self.models = models if models is not None else pipeline.ModelCache(long_lived=True)

    def preflight(self, settings: Settings) -> None:
        """Raise MissingWeights (naming every file) before a batch in which every file would fail."""
        from pipeline.stages import resolve

        resolve(settings.recipe(), pipeline.WeightLocator(self.config))

    def run(self, job: WatchJob, cancel: CancelToken) -> Image:
        s = job.settings
        image = images.load(job.path, max_pixels=self.config.max_pixels)
        region = pipeline.Region.parse(s.region) if s.region else None
        result = pipeline.run(s.recipe(), image, seed=job.seed, region=region, cancel=cancel,
                              config=self.config, models=self.models, device=self.device)
        return result.image
