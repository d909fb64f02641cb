"""Model residency and what the daemon's executor does when a job runs out of device memory.

One ``pipeline.ModelCache`` lives as long as the daemon, so the next job finds its models loaded. It
has a byte budget for the device: when a job switches between the SDXL/SUPIR models and the Flux
models and both do not fit, the least recently used ones are dropped first (LRU). ``unload`` gives
memory back on request.

Out of memory is handled inside ``pipeline.run`` by ``pipeline.memory_policy``, the same for the CLI,
the watch folder and the daemon: the failing stage runs again after the other cached models are
unloaded, with fewer tiles per call, model then sequential offload, then smaller tiles. What reaches the
executor is the final ``OutOfMemory``: for an editor job running inside a paused batch job (whose stage
still holds its models) that becomes NeedsWholeDevice, and the job runs again once the batch job has
given the device back.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import torch

from pipeline import ModelCache, OutOfMemory, Recipe

from ..errors import NeedsWholeDevice

log = logging.getLogger("dermis.daemon")

GiB = 2**30


def default_budget(device: torch.device) -> int | None:
    """Bytes the model cache may hold: the card minus a working reserve for activations; None on CPU."""
    if device.type != "cuda":
        return None
    _, total = torch.cuda.mem_get_info(device)
    return max(0, total - max(3 * GiB, int(total * 0.15)))


class Residency:
    def __init__(self, budget: int | None = None) -> None:
        self.models = ModelCache(budget, long_lived=True)

    @property
    def budget(self) -> int | None:
        return self.models.budget

    def loaded(self) -> list[tuple[str, int]]:
        """(key, bytes) of the resident models, least recently used first."""
        return [(e.key, e.size) for e in self.models.entries()]

    def unload(self, key: str = "") -> tuple[int, int]:
        """Drop one model (or all): returns (models dropped, their bytes)."""
        entries = [e for e in self.models.entries() if not key or e.key == key]
        for e in entries:
            self.models.drop(e.key)
        _empty_device_cache()
        return len(entries), sum(e.size for e in entries)

    def run(
        self,
        attempt: Callable[[Recipe], Any],
        recipe: Recipe,
        *,
        nested: bool = False,
    ) -> Any:
        """``attempt(recipe)``; its final out-of-memory error as NeedsWholeDevice when ``nested``."""
        try:
            return attempt(recipe)
        except (torch.OutOfMemoryError, OutOfMemory) as e:
            if not nested and isinstance(e, OutOfMemory):
                raise
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        _empty_device_cache()  # outside the except block: the failed attempt's frames are gone
        if nested:
            raise NeedsWholeDevice(detail)
        raise OutOfMemory(f"The job ran out of device memory outside its stages ({detail}). Close other "
                          "programs that use the GPU or run the daemon on the CPU (device = \"cpu\" in the config).")


def _empty_device_cache() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
