"""One out-of-memory policy for every stage: what ``pipeline.run`` does when a stage runs out of device
memory, so the CLI, the watch folder and the daemon behave the same.

A stage declares its memory knobs (``MEMORY_KNOBS``: which of its parameters set the tiles per model call,
the memory mode, the tile sizes) and records what it actually used (``ctx.using(...)``: "auto" settings
resolved, and the ``phase`` it was in). When the stage raises ``torch.OutOfMemoryError`` (or
``OutOfMemory``), the run frees the device (the failed attempt's tensors, then every cached model this
stage did not use) and runs the stage again on the same input with one knob moved down the ladder:

1. fewer tiles per call (halved down to one);
2. model offload, then 3. sequential offload (the memory mode);
4. smaller tiles (each tile knob that helps in the failing phase: an automatic or untiled setting
   becomes its first explicit size, then it halves down to its smallest).
Only knobs that help the phase the stage failed in are moved. A knob marked ``early`` (VAE tiling: cheap,
unlike streaming the weights) moves right after the tiles per call.

Each retry is announced as a progress message naming the setting; when nothing is left the stage fails
with one ``OutOfMemory`` that lists what was tried. Earlier stages are not run again.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .errors import OutOfMemory

log = logging.getLogger("dermis.pipeline")

MODES = ("resident", "model_offload", "sequential")


@dataclass(frozen=True)
class Knob:
    """One parameter of a stage the ladder may change.

    ``batch``: tiles per model call (halves to ``smallest``); ``memory``: the memory mode (``offload`` is
    the stage's own name for model offload); ``tile``: a tile size (an automatic or zero setting becomes
    ``first``, then halves to ``smallest``, staying a multiple of ``multiple``); ``switch``: a setting
    turned to ``value`` (e.g. VAE tiling on). ``phases``: the stage phases it can help (empty: all)."""

    param: str
    kind: Literal["batch", "memory", "tile", "switch"]
    smallest: int = 1
    first: int = 0
    multiple: int = 1
    value: str = ""
    offload: str = "model_offload"
    phases: tuple[str, ...] = ()
    early: bool = False


def _ladder(knobs: Sequence[Knob]) -> list[Knob]:
    rank = {"batch": 0, "memory": 2, "switch": 3, "tile": 4}
    return sorted(knobs, key=lambda k: 1 if k.early else rank[k.kind])  # stable: declared order within a rung


def next_settings(knobs: Sequence[Knob], params: Mapping[str, Any], used: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], str] | None:
    """The stage's raw params for the next attempt and a phrase saying what changed (one knob moved),
    or None when the ladder is at its end. ``used``: what the failed attempt recorded."""
    phase = used.get("phase")
    for k in _ladder(knobs):
        if k.phases and phase is not None and phase not in k.phases:
            continue
        value = _next_value(k, params.get(k.param), used.get(k.param, params.get(k.param)))
        if value is not None:
            return {**params, k.param: value}, _phrase(k, value)
    return None


def _next_value(k: Knob, asked: Any, used: Any) -> Any:
    if k.kind == "batch":
        n = _int(used)
        if n is None or n == 0:  # automatic and unrecorded: the least there is
            return k.smallest if _int(asked) != k.smallest else None
        return max(k.smallest, n // 2) if n > k.smallest else None
    if k.kind == "memory":
        # the stage's own spelling of model offload; "auto" the stage did not resolve counts as resident
        mode = {k.offload: "model_offload", "auto": "resident"}.get(str(used), str(used))
        if mode not in MODES or mode == MODES[-1]:
            return None
        nxt = MODES[MODES.index(mode) + 1]
        return k.offload if nxt == "model_offload" else nxt
    if k.kind == "switch":
        return k.value if str(used) != k.value else None
    n = _int(used)
    if not n:  # automatic, or the attempt ran untiled
        return k.first if _int(asked) != 0 else None  # an explicit 0 (never tile) is the user's choice
    smaller = max(k.smallest, (n // 2) // k.multiple * k.multiple)
    return smaller if smaller < n else None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _phrase(k: Knob, value: Any) -> str:
    if k.kind == "batch":
        return f"{value} tile(s) per model call"
    if k.kind == "memory":
        return "model offload" if value == k.offload else f"{value} offload"
    return f"{k.param} = {value}"


# ------------------------------------------------------------------------------------ the retries


class MemoryFailure:
    """A stage attempt that ran out of memory (kept instead of the exception, whose traceback would
    keep the attempt's tensors alive while the next one runs)."""

    def __init__(self, error: BaseException) -> None:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.detail = text


def attempt(fn: Callable[[], Any]) -> Any:
    """``fn()``, or a MemoryFailure when it ran out of device memory."""
    try:
        return fn()
    except (torch.OutOfMemoryError, OutOfMemory) as e:
        return MemoryFailure(e)


def free_device() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_ladder(run_once: Callable[[Mapping[str, Any]], tuple[Any, Mapping[str, Any]]],
                    params: Mapping[str, Any], knobs: Sequence[Knob], *, label: str,
                    evict: Callable[[float], int], notify: Callable[[str], None]) -> Any:
    """``run_once(raw params) -> (result or MemoryFailure, what the attempt used)``, climbing the ladder
    on every failure. ``evict(since)`` drops the cached models not used since ``since`` (once, first)."""
    tried: list[str] = []
    evicted = False
    while True:
        started = time.monotonic()
        result, used = run_once(params)
        if not isinstance(result, MemoryFailure):
            return result
        detail = result.detail
        del result
        free_device()  # here, outside any except block: the failed attempt's frames are gone
        if not evicted:
            evicted = True
            if evict(started):
                free_device()
                tried.append("unloading the other models")
                _announce(notify, label, "unloaded the other models")
                continue
        step = next_settings(knobs, params, used)
        if step is None:
            raise OutOfMemory(
                f"{label} ran out of device memory ({detail}) even after "
                f"{_listing(tried) or 'freeing the memory cache'}. Close other programs that use the GPU, "
                "lower the scale or select a smaller region, or run on the CPU (device = \"cpu\" in the "
                "config)."
            )
        params, change = step
        tried.append(change)
        _announce(notify, label, f"trying again with {change}")


def _announce(notify: Callable[[str], None], label: str, what: str) -> None:
    log.warning("%s ran out of device memory; %s", label, what)
    notify(f"{label}: out of device memory, {what}")


def _listing(items: list[str]) -> str:
    return items[0] if len(items) < 2 else ", ".join(items[:-1]) + " and " + items[-1]
