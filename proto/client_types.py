"""Plain data types and errors of the thin client (re-exported by proto/client.py); the job event
types are in proto/events.py, shared with the daemon.

Standard library only, so plugins can build requests and show errors even where grpcio is missing.
Runs on the editors' bundled Pythons (3.10+): no 3.11-only syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import TERMINAL, Event, EventKind, JobResult, Preview

__all__ = [
    "DEFAULT_PRIORITY", "OUTPUTS", "PRIORITIES", "TERMINAL", "ClientCounts", "ClientError",
    "DaemonUnavailable", "DependencyMissing", "Event", "EventKind", "JobCancelled", "JobFailed", "JobLost",
    "JobInfo", "JobRequest", "JobResult", "PresetInfo", "Preview", "Rejected", "ServerInfo",
    "StageInfo", "Unauthenticated", "WatchFolderCounts", "WeightInfo", "ModelFile", "ModelPlan",
]

DEFAULT_PRIORITY = "editor"
PRIORITIES = ("editor", "batch")
OUTPUTS = ("layer", "full")
CONTENTS = ("normal", "detail")


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


class JobLost(DaemonUnavailable):
    """The daemon went away while a job ran, and came back without it (a restart forgets every job)
    or not within the client's ``reconnect_s``."""

    code = "job_lost"


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
    # "normal" = the refined pixels; "detail" = the detail layer to put over the source in Grain Merge
    # mode (high frequencies the refinement changed, around mid-grey; blur ``detail_sigma`` px, None = 8)
    content: str = "normal"
    detail_sigma: float | None = None

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
        if self.content not in CONTENTS:
            raise Rejected(f"content must be 'normal' or 'detail', not {self.content!r}.", "invalid_argument")
        if self.priority not in PRIORITIES:
            raise Rejected(f"priority must be 'editor' or 'batch', not {self.priority!r}.",
                              "invalid_argument")


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
    context: int = 0  # px of surroundings processed around a selection
    feather: float = 0.0  # px: softness of the selection's edge
    previews: bool = False  # its jobs send previews


@dataclass
class WeightInfo:
    key: str
    description: str
    status: str  # "found", "missing" or "loaded"
    path: str


@dataclass
class ModelFile:
    """A file of the daemon's weight catalogue and, in a ModelPlan, what a fetch does about it."""

    role: str  # the weights key it fills, e.g. "sdxl"
    variant: str = ""
    filename: str = ""
    size: int = 0  # bytes; 0 = unknown
    size_exact: bool = False
    licence: str = ""
    non_commercial: bool = False
    gated: bool = False
    source: str = ""  # "hf", "url", "manual" or "package"
    page: str = ""
    path: str = ""  # where it goes (download) or was found (found)
    action: str = ""  # "download", "manual" (see note), "found"; "" in ServerInfo.catalogue
    note: str = ""
    supported: bool = True
    is_default: bool = False


@dataclass
class ModelPlan:
    """What FetchModels would do (a dry run): ``downloads`` and ``manual`` are what a plugin shows
    before asking; ``licences_to_accept`` need the user's yes (``fetch_models(accept_licences=True)``)."""

    files: list[ModelFile]
    download_bytes: int  # by the catalogue, approximate
    free_bytes: int  # on the disk of the daemon's models folder
    folder: str
    licences_to_accept: list[str]

    @property
    def downloads(self) -> list[ModelFile]:
        return [f for f in self.files if f.action == "download"]

    @property
    def manual(self) -> list[ModelFile]:
        return [f for f in self.files if f.action == "manual"]

    def describe(self) -> str:
        """The plan as the text a plugin shows before it asks (files, sizes, free space, licences)."""
        lines = []
        if self.downloads:
            lines.append(f"Download {len(self.downloads)} file(s), about {human_size(self.download_bytes)}, "
                         f"into {self.folder} ({human_size(self.free_bytes)} free):")
            lines += [f"  {f.role}: {f.filename} ({human_size(f.size) if f.size else 'size unknown'})"
                      for f in self.downloads]
        else:
            lines.append("Nothing to download" + (": every file is found." if not self.manual else "."))
        if self.manual:
            lines.append("To place by hand:")
            lines += [f"  {f.role}: {f.note}" for f in self.manual]
        if self.licences_to_accept:
            lines.append("These models are for non-commercial use only; downloading them accepts their "
                         "licences:")
            lines += [f"  {text}" for text in self.licences_to_accept]
        return "\n".join(lines)


def human_size(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as the Hub and file managers show sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass
class WorkerInfo:
    """One cluster worker of a daemon started with --ray (docs/cluster.md)."""

    name: str
    host: str
    device: str
    vram_free: int
    vram_total: int
    loaded_models: dict[str, int]
    job_id: str = ""  # "" when idle
    removed: str = ""  # why it takes no jobs ("removed: …", starting, "restarting: …"); "" in the pool


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
    shared_memory_dir: str = ""  # the daemon's folder for shared-memory transfers; "" = none
    catalogue: list[ModelFile] = field(default_factory=list)  # every file the daemon can fetch or knows
    flux_memory: list[str] = field(default_factory=list)  # FLUX file picked + what each memory mode holds
    workers: list[WorkerInfo] = field(default_factory=list)  # `dermis serve --ray`: the cluster's workers


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
    kind: str = ""  # "" (an image job) or "fetch_models"


@dataclass
class WatchFolderCounts:
    """A watch folder the daemon serves: its files by state (``error`` says why it is not watched)."""

    folder: str
    out: str
    preset: str
    pending: int
    running: int
    done: int
    skipped: int
    failed: int
    error: str = ""


@dataclass
class ClientCounts:
    client_name: str
    queued: int
    running: int  # running or paused
    done: int
    failed: int
    cancelled: int
