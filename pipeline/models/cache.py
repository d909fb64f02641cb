"""Model residency: load on first use, keep what fits, evict the least recently used.

The daemon keeps one cache for its lifetime so the next job does not reload gigabytes; the CLI uses a
fresh one per run. ``budget`` is in bytes of the device the models live on (None = unlimited).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class CacheEntry:
    key: str
    value: Any
    size: int  # bytes of parameters and buffers
    last_used: float
    loads: int = 1


def module_bytes(obj: Any) -> int:
    """Bytes held by a torch module (or a tuple/dict/dataclass of them); 0 for anything else."""
    import torch

    seen: set[int] = set()
    total = 0

    def visit(o: Any) -> None:
        nonlocal total
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, torch.nn.Module):
            for t in [*o.parameters(), *o.buffers()]:
                if id(t) not in seen and t.device.type != "meta":
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        elif isinstance(o, torch.Tensor):
            total += o.numel() * o.element_size()
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif hasattr(o, "__dataclass_fields__"):
            for name in o.__dataclass_fields__:
                visit(getattr(o, name))
        elif hasattr(o, "__dict__"):  # wrappers such as spandrel's ModelDescriptor hold the module
            for v in vars(o).values():
                if isinstance(v, (torch.nn.Module, torch.Tensor)):
                    visit(v)

    visit(obj)
    return total


class ModelCache:
    """``long_lived``: the cache outlives one job (the daemon's), so one-time costs such as compiling a
    model pay off; a CLI run's cache is not."""

    def __init__(self, budget: int | None = None, *, long_lived: bool = False) -> None:
        self.budget = budget
        self.long_lived = long_lived
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.RLock()
        self.evictions = 0

    def get(self, key: str, loader: Callable[[], T], *, size: int | None = None) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()
                self._entries.move_to_end(key)
                return entry.value
        value = loader()
        nbytes = module_bytes(value) if size is None else size
        with self._lock:
            self._make_room(nbytes, keep=key)
            self._entries[key] = CacheEntry(key, value, nbytes, time.monotonic())
        return value

    def _make_room(self, incoming: int, keep: str) -> None:
        if self.budget is None:
            return
        while self._entries and self.used() + incoming > self.budget:
            victim = next(iter(self._entries))
            if victim == keep:
                break
            self.drop(victim)
            self.evictions += 1

    def used(self) -> int:
        return sum(e.size for e in self._entries.values())

    def drop(self, key: str | None = None) -> None:
        """Forget one model (or all of them) and give the memory back."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a hard dependency of the pipeline
            pass

    def drop_unused_since(self, since: float) -> int:
        """Drop every model not used since ``since`` (``time.monotonic()``): what the memory policy
        frees when a stage runs out of device memory. Returns how many were dropped."""
        with self._lock:
            stale = [k for k, e in self._entries.items() if e.last_used < since]
        for key in stale:
            self.drop(key)
        return len(stale)

    def device_bytes(self, device: Any, prefix: str = "") -> int:
        """Bytes of cached models (keys starting with ``prefix``) whose weights sit on ``device`` now: a
        resident model from the last job, whose room a reload of the same family may reuse."""
        import torch

        def on(value: Any) -> bool:
            p = next(iter(value.parameters()), None) if isinstance(value, torch.nn.Module) else None
            return p is not None and p.device == torch.device(device)

        with self._lock:
            return sum(module_bytes(e.value) for e in self._entries.values() if e.key.startswith(prefix) and on(e.value))

    def entries(self) -> list[CacheEntry]:
        with self._lock:
            return list(self._entries.values())

    def __contains__(self, key: str) -> bool:
        return key in self._entries
