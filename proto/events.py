"""The job event: one type on both sides of the wire.

The daemon's job queue appends ``Event``s to each job's log (daemon/jobs/queue.py), the servicer sends
them as ``dermis.v1.JobEvent`` messages and the thin client turns those back into the same ``Event``s
(proto/messages.py), so a plugin, the CLI and the daemon read one shape: ``match ev.kind`` (or an
if-chain on older Pythons) over ``EventKind``, with ``seq`` strictly increasing per job.

Standard library only and Python 3.10 syntax: the editors' bundled Pythons import it too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class EventKind(enum.Enum):
    queued = "queued"  # .position (0 = next)
    started = "started"  # the job left the queue
    stage = "stage"  # a stage began: .stage, .message
    progress = "progress"  # .stage, .step, .steps, .tile, .tiles, .fraction (0..1 whole job)
    preview = "preview"  # .preview: Preview (small 8-bit RGB)
    message = "message"  # .message (e.g. "skin_detail: skipped, weights not found")
    done = "done"  # .result: JobResult (the whole result, already reassembled; None in the daemon)
    error = "error"  # .error_code, .message
    cancelled = "cancelled"  # .message


TERMINAL = (EventKind.done, EventKind.error, EventKind.cancelled)


@dataclass
class Preview:
    width: int
    height: int
    pixels: bytes  # RGB8, row-major
    # the part of the output canvas it shows (x, y, width, height; the result's place in layer mode);
    # None = not known
    area: tuple[int, int, int, int] | None = None
    stage: str = ""


@dataclass
class JobResult:
    job_id: str
    pixels: bytes  # raw, same layout rules as JobRequest
    width: int
    height: int
    channels: int  # 4 (RGBA) or 2 (LA) in layer mode; as the input in full mode
    bit_depth: int  # as the input
    offset_x: int  # layer position in the output canvas (0 in full mode)
    offset_y: int
    canvas_width: int  # size of the whole output image (input size * scale)
    canvas_height: int
    layer_name: str  # "Dermis (<preset label>, <seed>)"
    preset: str
    seed: int
    icc_profile: bytes | None = None
    messages: list[str] = field(default_factory=list)  # notes from the run
    stage_seconds: dict[str, float] = field(default_factory=dict)
    content: str = "normal"  # "normal" (the refined pixels) or "detail" (the detail layer)


class Event(NamedTuple):
    kind: EventKind
    job_id: str
    seq: int  # strictly increasing per job, from 1; watch(after_seq=) resumes
    stage: str = ""
    step: int = 0
    steps: int = 0
    tile: int = 0
    tiles: int = 0
    fraction: float = 0.0
    message: str = ""
    position: int = 0
    error_code: str = ""  # for error: the daemon's ErrorCode value ("missing_weights", ...)
    preview: Preview | None = None
    result: JobResult | None = None
