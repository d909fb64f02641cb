"""How long the plugin's own steps on Krita's UI thread take, by name.

Issue #17 bounds how long Dermis may freeze Krita (0.5 s at 4096² 16-bit). A heartbeat timer sees
every gap in the event loop, but on a busy machine a gap also holds the time other processes (and
other threads holding Python's lock) took the CPU. So each step is also timed around itself, by
the wall clock and by the UI thread's CPU time: the CPU time is the plugin's work. Where Krita
waits for its own threads (``addChildNode`` composites the whole canvas again: ``ADD_STEP``), Krita
runs its event loop while it waits (measured: a 6 s ``addChildNode`` on a loaded machine while a
20 ms heartbeat never missed more than 0.34 s), so there neither time is the plugin's, and only the
heartbeat tells. The GUI test reads ``report()``. Costs two clock reads a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Timing:
    """One kind of step: how often it ran, its longest run (wall clock and this thread's CPU)."""

    count: int = 0
    max_s: float = 0.0  # perf_counter around the step: what the user waits, scheduling included
    max_cpu_s: float = 0.0  # thread_time: the UI thread's own work in the step
    total_s: float = 0.0


TIMES: dict[str, Timing] = {}
# the last step of an insertion: Krita's addChildNode, which waits inside Krita until Krita's own
# threads have composited the whole canvas again (one call the plugin cannot cut into strips)
ADD_STEP = "add layer"


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Record the step's duration under ``name`` (also when it raises)."""
    start = clock()
    try:
        yield
    finally:
        record(name, start)


def clock() -> tuple[float, float]:
    """Now, for ``record``: (wall clock, this thread's CPU time)."""
    return time.perf_counter(), time.thread_time()


def record(name: str, start: tuple[float, float]) -> None:
    """Record a step that began at ``start`` (``clock()``) under ``name``."""
    wall, cpu = time.perf_counter() - start[0], time.thread_time() - start[1]
    t = TIMES.setdefault(name, Timing())
    t.count += 1
    t.total_s += wall
    t.max_s, t.max_cpu_s = max(t.max_s, wall), max(t.max_cpu_s, cpu)


def timed_tick(tick: Callable[[], Any]) -> None:
    """Run one timer tick of the plugin, recorded as "tick", or as "tick adding a layer" when it ran
    ``ADD_STEP`` (Krita's event loop ran inside it, so its times hold Krita's work too)."""
    added, start = count(ADD_STEP), clock()
    try:
        tick()
    finally:
        record("tick" if count(ADD_STEP) == added else "tick adding a layer", start)


def count(name: str) -> int:
    """How many steps ``name`` has recorded."""
    t = TIMES.get(name)
    return t.count if t else 0


def reset() -> None:
    TIMES.clear()


def report() -> dict[str, list[float]]:
    """{name: [count, max s, max CPU s, total s]}, for a test or a bench to print."""
    return {k: [t.count, round(t.max_s, 4), round(t.max_cpu_s, 4), round(t.total_s, 3)] for k, t in TIMES.items()}
