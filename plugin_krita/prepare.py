"""The byte work around a run, on worker threads (``jobs.Call``), so Krita's UI thread only calls
Krita: before the jobs, the face search, B,G,R,A -> R,G,B,A and the split into parts; after them,
each result back to Krita's order and split into the opaque layer and its coverage (the mask). No Krita calls
here; every loop works in 1 MiB steps (pixels.py), so the UI thread gets its turn in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from . import pixels, uitime
from .thin_client import islands


@dataclass
class Parts:
    """A source split into the parts its jobs refine, with their pixels (R,G,B,A, as the daemon wants)."""

    parts: list[tuple[Any, bytes]]  # (islands.Part, its pixels)
    notes: list[str]


STEP_S = 0.05  # UI-thread time per timer tick for reading strips


def read_some(src: Any) -> None:
    """UI thread: read strips of ``src`` for about ``STEP_S`` (its reader is None when all are read)."""
    t0 = time.monotonic()
    while src.reader is not None and time.monotonic() - t0 < STEP_S:
        with uitime.timed("read step"):
            next(src.reader, None)


def advance(steps: Generator[None, None, Any]) -> tuple[bool, Any]:
    """UI thread: run ``steps`` for about ``STEP_S``; (True, its value) once it has ended."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < STEP_S:
        start = uitime.clock()
        try:
            next(steps)
        except StopIteration as end:
            uitime.record(uitime.ADD_STEP, start)
            return True, end.value
        uitime.record("insert step", start)
    return False, None


def parts(src: Any, ask: Any, connect: Callable[[], Any]) -> Parts:
    """What ``src`` (document.Source: Krita's B,G,R,A) becomes for ``ask`` (runs.Ask)."""
    faces = None
    if ask.faces:
        picture, w, h, factor = src.face_picture()
        with connect() as c:
            faces = [tuple(round(v * factor) for v in box) for box in c.find_faces(picture, w, h, 3)]
    rgba = pixels.swap_red_blue(src.pixels, src.bit_depth)
    if ask.scale != 1.0:
        found, notes = [islands.Part((0, 0, src.width, src.height), src.mask, "")], []
    else:
        found, notes = islands.split(src.mask, src.width, src.height, padding=ask.padding,
                                     islands=ask.islands, faces=faces)
    pixel_bytes = src.bit_depth // 2
    return Parts([(p, islands.crop(rgba, src.width, p.box, pixel_bytes=pixel_bytes)) for p in found], notes)


def layer_bytes(result: Any, has_mask: bool) -> tuple[bytes, bytes | None]:
    """A result in Krita's B,G,R,A: (the layer, None) or, with a selection, (the layer made opaque,
    the selection's coverage, 1 byte a pixel, for its transparency mask) (see layers.py)."""
    bgra = pixels.swap_red_blue(result.pixels, result.bit_depth)
    if not has_mask:
        return bgra, None
    return pixels.split_alpha(bgra, result.bit_depth)
