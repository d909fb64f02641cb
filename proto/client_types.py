"""Plain data types and errors of the thin client (re-exported by proto/client.py).

Standard library only, so plugins can build requests and show errors even where grpcio is missing.
Runs on the editors' bundled Pythons (3.10+): no 3.11-only syntax.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

DEFAULT_PRIORITY = "editor"
PRIORITIES = ("editor", "batch")
OUTPUTS = ("layer", "full")


# ------------------------------------------------------------------------------------------ errors


class ClientError(Exception):
    """Base of every client error. ``code`` is machine-readable; ``str(e)`` is for the user."""

    code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class DependencyMissing(ClientError):
    """grpcio or protobuf cannot be imported (or is too old for the generated code)."""

    code = "dependency_missing"


class DaemonUnavailable(ClientError):
    """No daemon answers at the address (not started, wrong address, or it went away)."""

    code = "unavailable"


class Unauthenticated(ClientError):
    """The daemon refused the token (none found, or from an earlier daemon run)."""

    code = "unauthenticated"


class JobFailed(ClientError):
    """The job ended with an error event; ``code`` is the daemon's (e.g. "missing_weights")."""


class Rejected(JobFailed):
    """The daemon refused the job at submit time (bad request, unknown preset, queue full…).

    A JobFailed, so code that handles failed jobs handles refused ones too.
    """


class JobCancelled(ClientError):
    code = "cancelled"


# ---------------------------------------------------------------------------------------- requests


@dataclass
class JobRequest:
    pixels: bytes  # raw interleaved pixels, row-major, no padding
    width: int
    height: int
    channels: int  # 1 L, 2 LA, 3 RGB, 4 RGBA
    bit_depth: int = 8  # 8 or 16 (16-bit little-endian uint16)
    preset: str = ""  # "" = the daemon's default preset
    scale: float | None = None  # None = the preset's
    seed: int | None = None  # None = the daemon picks one; the result reports it
    overrides: dict[str, str] = field(default_factory=dict)  # "grain.strength": "0.05"
    region: tuple[int, int, int, int] | None = None  # x, y, w, h in pixels
    mask: bytes | None = None  # soft mask: width*height bytes of uint8 (0..255), same size as the image
    output: str = "layer"  # "layer" (region + alpha, with offset) or "full"
    priority: str = DEFAULT_PRIORITY  # "editor" or "batch"
    job_id: str | None = None  # client-chosen id for idempotent resubmits; None = a new uuid4
    icc_profile: bytes | None = None
    client_name: str = ""  # "krita", "gimp", "cli", "watch" (logs, list-jobs)

    def expected_bytes(self) -> int:
        return self.width * self.height * self.channels * (self.bit_depth // 8)

    def check(self) -> None:
        """Catch the mistakes a plugin can make before anything is sent (the daemon checks again).
        Raises Rejected (a JobFailed) with code "invalid_argument", as the daemon would."""
        if self.channels not in (1, 2, 3, 4):
            raise Rejected(f"channels must be 1-4, not {self.channels}.", "invalid_argument")
        if self.bit_depth not in (8, 16):
            raise Rejected(f"bit_depth must be 8 or 16, not {self.bit_depth}.", "invalid_argument")
        if self.width <= 0 or self.height <= 0:
            raise Rejected(f"the image is empty ({self.width}x{self.height}).", "invalid_argument")
        if len(self.pixels) != self.expected_bytes():
            raise Rejected(
                f"{self.width}x{self.height}x{self.channels} at {self.bit_depth} bits needs "
                f"{self.expected_bytes():,} bytes of pixels, not {len(self.pixels):,}.",
                "invalid_argument",
            )
        if self.mask is not None and len(self.mask) != self.width * self.height:
            raise Rejected(
                f"the mask needs {self.width * self.height:,} bytes (one per pixel), not {len(self.mask):,}.",
                "invalid_argument",
            )
        if self.output not in OUTPUTS:
            raise Rejected(f"output must be 'layer' or 'full', not {self.output!r}.", "invalid_argument")
        if self.priority not in PRIORITIES:
            raise Rejected(f"priority must be 'editor' or 'batch', not {self.priority!r}.",
                              "invalid_argument")


# ------------------------------------------------------------------------------------------ events


class EventKind(enum.Enum):
    queued = "queued"  # .position (0 = next)
    started = "started"  # the job left the queue
    stage = "stage"  # a stage began: .stage, .message
    progress = "progress"  # .stage, .step, .steps, .tile, .tiles, .fraction (0..1 whole job)
    preview = "preview"  # .preview: Preview (small 8-bit RGB)
    message = "message"  # .message (e.g. "skin_detail: skipped, weights not found")
    done = "done"  # .result: JobResult (the whole result, already reassembled)
    error = "error"  # .error_code, .message
    cancelled = "cancelled"  # .message


TERMINAL = (EventKind.done, EventKind.error, EventKind.cancelled)


@dataclass
class Preview:
    width: int
    height: int
    pixels: bytes  # RGB8


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
    error_code: str = ""
    preview: Preview | None = None
    result: JobResult | None = None


# ------------------------------------------------------------------------------------- server info


@dataclass
class StageInfo:
    id: str
    kind: str
    enabled: bool
    optional: bool
    params: dict[str, str]


@dataclass
class PresetInfo:
    name: str
    label: str
    description: str
    scale: float
    stages: list[StageInfo]


@dataclass
class WeightInfo:
    key: str
    description: str
    status: str  # "found", "missing" or "loaded"
    path: str


@dataclass
class ServerInfo:
    version: str
    device: str
    vram_free: int  # bytes; 0 on CPU
    vram_total: int
    default_preset: str
    presets: list[PresetInfo]
    weights: list[WeightInfo]
    queue_length: int  # jobs queued, running or paused
    api_version: int = 1
    loaded_models: dict[str, int] = field(default_factory=dict)  # residency key -> bytes
    model_budget: int = 0  # bytes; 0 = no limit
    max_pixels: int = 0
    capabilities: list[str] = field(default_factory=list)


@dataclass
class JobInfo:
    job_id: str
    state: str  # "queued", "running", "paused", "done", "failed", "cancelled"
    preset: str
    priority: str  # "editor" or "batch"
    client_name: str
    fraction: float
    position: int  # while queued: jobs ahead (0 = next)
    error_code: str = ""
    message: str = ""
    submitted: float = 0.0  # Unix time


@dataclass
class ClientCounts:
    client_name: str
    queued: int
    running: int  # running or paused
    done: int
    failed: int
    cancelled: int
