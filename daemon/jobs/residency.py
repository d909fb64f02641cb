"""Model residency and the out-of-memory ladder of the daemon's executor.

One ``pipeline.ModelCache`` lives as long as the daemon, so the next job finds its models loaded. It
has a byte budget for the device: when a job switches between the SDXL/SUPIR models and the Flux
models and both do not fit, the least recently used ones are dropped first (LRU). ``unload`` gives
memory back on request.

When a job runs out of device memory the executor climbs a ladder, retrying the job after each rung
(recovery happens outside the ``except`` block, whose traceback would keep the tensors alive):

1. empty the allocator's cache (``torch.cuda.empty_cache``: fragmentation);
2. unload every other model;
3. run stages that batch tiles (a ``batch`` parameter) one tile at a time;
4. give up with a clear ``OutOfMemory`` — or, for an editor job running inside a paused batch job
   (whose stage still holds its models), ask the executor for the whole device (NeedsWholeDevice).

Stages that tile themselves (``upscale_model``) also halve their tile size on OOM before they give up.
Offloading to the CPU is a stage's own choice (none of the current stages offers it).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Callable
from typing import Any

import torch

from pipeline import ModelCache, OutOfMemory, Recipe
from pipeline.stages import load_stage

from ..errors import NeedsWholeDevice

log = logging.getLogger("dermis.daemon")

GiB = 2**30
_RUNGS = {
    "empty_cache": "emptied the device memory cache",
    "evict": "unloaded the other models",
    "one_tile": "processing one tile at a time",
}


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
        notify: Callable[[str], None],
        nested: bool = False,
    ) -> Any:
        """``attempt(recipe)`` with the out-of-memory ladder around it (see the module docstring)."""
        detail = ""
        for rung in (None, "empty_cache", "evict", "one_tile"):
            if rung == "one_tile":
                smaller = one_tile_per_batch(recipe)
                if smaller is None:
                    continue
                recipe = smaller
            elif rung == "empty_cache":
                _empty_device_cache()
            elif rung == "evict":
                self.unload()
            if rung is not None:
                notify(f"out of device memory: {_RUNGS[rung]}, trying again")
                log.warning("job ran out of device memory; %s", _RUNGS[rung])
            try:
                return attempt(recipe)
            except (torch.OutOfMemoryError, OutOfMemory) as e:
                detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            gc.collect()  # here, outside the except block: the failed attempt's frames are gone
        _empty_device_cache()
        if nested:
            raise NeedsWholeDevice(detail)
        raise OutOfMemory(
            "The job ran out of device memory even after emptying the memory cache, unloading every "
            "other model and processing one tile at a time "
            f"({detail}). Close other programs that use the GPU, lower the scale or select a smaller "
            "region, or run the daemon on the CPU (device = \"cpu\" in the config)."
        )


def one_tile_per_batch(recipe: Recipe) -> Recipe | None:
    """The recipe with every tile-batching stage set to batch = 1; None if none batches more."""
    stages, changed = [], False
    for spec in recipe.stages:
        if spec.enabled:
            fields = {f.name: f for f in dataclasses.fields(load_stage(spec.kind).Params)}
            if "batch" in fields:
                current = spec.params.get("batch", fields["batch"].default)
                if int(current) > 1:
                    spec = dataclasses.replace(spec, params={**spec.params, "batch": 1})
                    changed = True
        stages.append(spec)
    return dataclasses.replace(recipe, stages=tuple(stages)) if changed else None


def _empty_device_cache() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
