"""The thin client of the Dermis daemon: what the Krita and GIMP plugins and `dermis upscale --server` use.

Pure Python over grpcio + protobuf and the standard library, nothing else (no torch, numpy, Pillow or
platformdirs), so it runs inside the editors' bundled Pythons (3.10+). grpc is imported on the first
call, not at import: a plugin can always import this module, register itself and show the
DependencyMissing message when grpcio is absent. Everything here is imported relatively so a copy of
``proto/`` vendored under another package name works.

    with Client() as c:                        # address and token from the daemon's runtime file
        result = c.run(JobRequest(pixels, w, h, 4, bit_depth=16, preset="lite"), on_event=print)

Threading: methods block. Call them off the UI thread; ``cancel()`` may be called from any thread
while another thread is inside ``watch()``. The contract is /work/CLIENT_API.md (docs/daemon.md).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import bulk
from .client_types import (
    DEFAULT_PRIORITY,
    TERMINAL,
    ClientCounts,
    ClientError,
    DaemonUnavailable,
    DependencyMissing,
    Event,
    EventKind,
    JobCancelled,
    JobFailed,
    JobInfo,
    JobRequest,
    JobResult,
    PresetInfo,
    Preview,
    Rejected,
    ServerInfo,
    StageInfo,
    Unauthenticated,
    WeightInfo,
)

__all__ = [
    "CHUNK_BYTES", "DEFAULT_PRIORITY", "Client", "ClientCounts", "ClientError", "DaemonUnavailable",
    "DependencyMissing", "Event", "EventKind", "JobCancelled", "JobFailed", "JobInfo", "JobRequest",
    "JobResult", "PresetInfo", "Preview", "Rejected", "ServerInfo", "StageInfo", "Unauthenticated",
    "WeightInfo", "default_runtime_file", "read_runtime_file",
]

CHUNK_BYTES = 1 << 20  # 1 MiB per upload chunk: far below gRPC's 4 MiB message limit
# Both directions allow messages well above one chunk (plus header and ICC profile), so an image of
# any size goes through as a stream of small messages; nothing is ever sent as one big message.
MAX_MESSAGE_BYTES = 16 << 20
ADDRESS_ENV = "DERMIS_ADDRESS"
TOKEN_ENV = "DERMIS_TOKEN"
ERROR_CODE_KEY = "dermis-error-code"  # trailing metadata with the daemon's machine-readable code
_WATCH_RETRIES = 3  # reconnects of one watch() after the stream broke (daemon restart: NOT_FOUND)
_STATES = {0: "unknown", 1: "queued", 2: "running", 3: "paused", 4: "done", 5: "failed", 6: "cancelled"}
_PRIORITY_PB = {"editor": 1, "batch": 2}
_OUTPUT_PB = {"layer": 1, "full": 2}
_WEIGHT_STATUS = {0: "unknown", 1: "found", 2: "missing", 3: "loaded"}
# status codes that mean "the daemon refused this request", not "the daemon is gone"
_REFUSALS = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "ALREADY_EXISTS",
             "OUT_OF_RANGE", "NOT_FOUND", "PERMISSION_DENIED")


# ------------------------------------------------------------------------------- address discovery


def default_runtime_file() -> Path:
    """Where `dermis serve` writes {"address", "token_file", "pid", ...} (same logic as the daemon)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        state = os.environ.get("XDG_STATE_HOME", "")
        base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "dermis" / "daemon.json"


def read_runtime_file(path: Path | None = None) -> dict[str, Any] | None:
    """The running daemon's runtime file, or None when there is none (or it is unreadable)."""
    path = path or default_runtime_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def normalize_address(address: str) -> str:
    """'unix:/p', 'unix:///p', '/p' (a socket path), '127.0.0.1:PORT', 'localhost:PORT' -> gRPC target."""
    address = address.strip()
    if address.startswith("unix:"):
        return address
    if address.startswith("/") or (os.sep != "/" and address.startswith(os.sep)):
        return "unix:" + address
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}", address):
        raise ClientError(
            f"'{address}' is not a daemon address; use unix:/path/to/socket or 127.0.0.1:PORT.",
            "invalid_argument",
        )
    return address


def _pid_gone(pid: Any) -> bool:
    """True when the daemon that wrote the runtime file is certainly not running (POSIX only)."""
    if os.name != "posix" or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


# ------------------------------------------------------------------------------------ grpc, lazily


def _grpc_modules() -> tuple[Any, Any, Any]:
    """(grpc, dermis_pb2, dermis_pb2_grpc), or DependencyMissing with a readable reason."""
    try:
        import grpc

        from .dermis.v1 import dermis_pb2, dermis_pb2_grpc
    except ImportError as e:
        raise DependencyMissing(
            "The Dermis client needs the Python packages grpcio and protobuf, which this Python "
            f"({sys.executable}, {sys.version.split()[0]}) cannot import ({e}). Reinstall the plugin with "
            "`dermis install-plugin`, which bundles them, or install them into this Python."
        ) from None
    except Exception as e:  # protobuf's VersionError or grpc's version RuntimeError: runtime too old
        raise DependencyMissing(
            f"The grpcio/protobuf packages this Python has are too old for the Dermis client: {e}"
        ) from None
    return grpc, dermis_pb2, dermis_pb2_grpc


class Client:
    """A connection to one daemon. Nothing connects until the first call."""

    def __init__(self, address: str | None = None, token: str | None = None, *,
                 timeout: float = 10.0) -> None:
        self._address_arg = address
        self._token_arg = token
        self.timeout = timeout
        self.address = ""  # the resolved gRPC target, once connected
        self._token: str | None = None
        self._channel: Any = None
        self._stub: Any = None
        self._submit_call: Any = None
        self._watch_call: Any = None
        self._lock = threading.Lock()
        self._calls: set[Any] = set()  # open Watch streams, cancelled by close()
        self._closed = False
        self._rediscover = False  # set when the daemon went away or refused the token

    # -- connection --------------------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends open watch() streams (their iterators stop) and the channel."""
        with self._lock:
            self._closed = True
            calls, self._calls = list(self._calls), set()
            channel, self._channel, self._stub = self._channel, None, None
        for call in calls:
            call.cancel()
        if channel is not None:
            channel.close()

    def _connect(self) -> tuple[Any, Any, Any]:
        grpc, pb, pb_grpc = _grpc_modules()
        with self._lock:
            if self._closed:
                raise ClientError("this client was closed.", "closed")
            if self._rediscover and not (self._address_arg and self._token_arg):
                # a restarted daemon has a new token (and maybe a new port): look again
                self._rediscover = False
                self._channel = self._stub = None  # a watch on the old channel may still be running
            if self._stub is None:
                self.address, self._token = self._discover()
                self._channel = grpc.insecure_channel(self.address, options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.keepalive_time_ms", 30_000),  # notice a dead daemon during long watches
                    ("grpc.keepalive_timeout_ms", 10_000),
                ])
                self._stub = pb_grpc.DermisStub(self._channel)
                # the two pixel-carrying calls take bulk.py's copy-saving (de)serializers
                service = "/" + pb.DESCRIPTOR.services_by_name["Dermis"].full_name
                self._submit_call = self._channel.stream_unary(
                    service + "/Submit", request_serializer=bulk.serialize,
                    response_deserializer=pb.SubmitReply.FromString)
                self._watch_call = self._channel.unary_stream(
                    service + "/Watch", request_serializer=pb.WatchRequest.SerializeToString,
                    response_deserializer=lambda raw: bulk.decode_event(raw, pb.JobEvent))
            return grpc, pb, self._stub

    def _discover(self) -> tuple[str, str | None]:
        runtime_path = default_runtime_file()
        runtime = read_runtime_file(runtime_path)
        address = self._address_arg or os.environ.get(ADDRESS_ENV)
        if not address:
            if runtime is None or not runtime.get("address"):
                raise DaemonUnavailable(
                    f"No Dermis daemon is running (no {runtime_path}). Start it with `dermis serve`, "
                    f"or give its address (${ADDRESS_ENV}).")
            if _pid_gone(runtime.get("pid")):
                raise DaemonUnavailable(
                    f"The Dermis daemon that wrote {runtime_path} (pid {runtime.get('pid')}) is no longer "
                    "running. Start it with `dermis serve`.")
            address = str(runtime["address"])
        token = self._token_arg or os.environ.get(TOKEN_ENV)
        if not token:
            token_file = Path(runtime["token_file"]) if runtime and runtime.get("token_file") \
                else runtime_path.with_name("token")
            try:
                token = token_file.read_text(encoding="utf-8").strip() or None
            except OSError:
                token = None
        target = normalize_address(address)
        if target.startswith("unix:"):
            path = target[len("unix:"):]
            path = path[2:] if path.startswith("//") else path
            if not os.path.exists(path):  # nothing to wait for: no daemon has bound it
                raise DaemonUnavailable(f"No Dermis daemon is listening at {target} (there is no socket "
                                        "there). Start it with `dermis serve`.")
        return target, token

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),) if self._token else ()

    def _error(self, e: Any, what: str) -> ClientError:
        """A grpc.RpcError as the ClientError a plugin can show."""
        status = e.code().name if hasattr(e, "code") and e.code() is not None else "UNKNOWN"
        details = (e.details() if hasattr(e, "details") else "") or ""
        code = ""
        for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
            if key == ERROR_CODE_KEY:
                code = value
        if status in ("UNAUTHENTICATED", "UNAVAILABLE") and not code:
            self._rediscover = True
        if status == "UNAUTHENTICATED":
            how = "no token was found" if not self._token else "the token is not this daemon's"
            return Unauthenticated(
                f"The Dermis daemon at {self.address} refused the {what} ({how}). The client reads the "
                f"token from ${TOKEN_ENV} or the file named in {default_runtime_file()}; a restarted "
                "daemon writes a new one.")
        if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            if code:  # the daemon itself said why (e.g. it is shutting down)
                return DaemonUnavailable(details, code)
            return DaemonUnavailable(
                f"No Dermis daemon answered at {self.address} ({what}: {details or status}). "
                "Start it with `dermis serve`.")
        if status == "CANCELLED" and self._closed:
            return ClientError("the client was closed.", "closed")
        if status in _REFUSALS:
            return Rejected(details or status, code or status.lower())
        return ClientError(details or f"{what} failed ({status}).", code or status.lower())

    # -- calls -------------------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        return _server_info(self._unary("GetServerInfo", lambda pb: pb.GetServerInfoRequest(),
                                        "server info request"))

    def _unary(self, method: str, make_request: Callable[[Any], Any], what: str) -> Any:
        """One unary call with wait_for_ready and the deadline. A token refusal after a daemon restart
        is retried once with the token (and address) found again."""
        for attempt in (1, 2):
            grpc, pb, stub = self._connect()
            try:
                return getattr(stub, method)(make_request(pb), timeout=self.timeout,
                                             metadata=self._metadata(), wait_for_ready=True)
            except grpc.RpcError as e:
                err = self._error(e, what)
            if attempt == 2 or not (isinstance(err, Unauthenticated) and self._rediscover):
                raise err
        raise AssertionError("unreachable")

    def submit(self, job: JobRequest) -> str:
        """Uploads the job in <= 1 MiB chunks; returns its id once the daemon has queued it."""
        job.check()
        job_id = job.job_id or uuid.uuid4().hex
        # an upload deadline that grows with the size: ~25 MB/s is far below loopback speed
        deadline = self.timeout + (len(job.pixels) + len(job.mask or b"")) / 25e6
        for attempt in (1, 2):
            grpc, pb, _stub = self._connect()
            try:
                reply = self._submit_call(_upload(pb, _header(pb, job, job_id), job), timeout=deadline,
                                          metadata=self._metadata(), wait_for_ready=True)
                return str(reply.job_id)
            except grpc.RpcError as e:
                err = self._error(e, "job upload")
            if attempt == 2 or not (isinstance(err, Unauthenticated) and self._rediscover):
                raise err
        raise AssertionError("unreachable")

    def watch(self, job_id: str, after_seq: int = 0) -> Iterator[Event]:
        """Events of one job, ending after done / error / cancelled. Reconnects if the stream breaks."""
        last, retries = after_seq, 0
        while True:
            grpc, pb, _stub = self._connect()
            call = self._watch_call(pb.WatchRequest(job_id=job_id, after_seq=last),
                                    metadata=self._metadata(), wait_for_ready=True)
            with self._lock:
                if self._closed:
                    call.cancel()
                    return
                self._calls.add(call)
            chunks: list[memoryview] = []
            received = 0
            try:
                for msg in call:
                    if isinstance(msg, bulk.RawResultChunk):
                        if msg.offset != received:
                            raise ClientError(f"result chunk at byte {msg.offset}, expected {received}: "
                                              "the stream is damaged.", "data_loss")
                        chunks.append(msg.data)
                        received += len(msg.data)
                        continue
                    event = _event(msg, msg.WhichOneof("kind"), chunks)
                    chunks, received = [], 0
                    last = event.seq
                    yield event
                    if event.kind in TERMINAL:
                        return
                if self._closed:
                    return
                raise DaemonUnavailable(f"The daemon at {self.address} ended the event stream of job "
                                        f"{job_id} before the job finished.")
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.CANCELLED and self._closed:
                    return
                if e.code() == grpc.StatusCode.UNAVAILABLE and retries < _WATCH_RETRIES:
                    retries += 1
                    time.sleep(0.5 * retries)
                    continue
                raise self._error(e, "watch") from None
            finally:
                call.cancel()
                with self._lock:
                    self._calls.discard(call)

    def cancel(self, job_id: str) -> None:
        self._unary("Cancel", lambda pb: pb.CancelRequest(job_id=job_id), "cancel")

    def run(self, job: JobRequest, on_event: Callable[[Event], None] | None = None) -> JobResult:
        """submit + watch: returns the result, raises JobFailed / JobCancelled."""
        job_id = self.submit(job)
        for event in self.watch(job_id):
            if on_event is not None:
                on_event(event)
            if event.kind is EventKind.done and event.result is not None:
                return event.result
            if event.kind is EventKind.error:
                raise JobFailed(event.message or "The job failed.", event.error_code or "internal")
            if event.kind is EventKind.cancelled:
                raise JobCancelled(event.message or "The job was cancelled.")
        raise ClientError("the client was closed before the job finished.", "closed")

    def fetch_result(self, job_id: str) -> JobResult:
        """The result of a finished job the daemon still holds (downloads it again)."""
        for event in self.watch(job_id):
            if event.kind is EventKind.done and event.result is not None:
                return event.result
            if event.kind is EventKind.error:
                raise JobFailed(event.message or "The job failed.", event.error_code or "internal")
            if event.kind is EventKind.cancelled:
                raise JobCancelled(event.message or "The job was cancelled.")
        raise ClientError("the client was closed before the result came.", "closed")

    def list_jobs(self, include_finished: bool = False) -> list[JobInfo]:
        return self._list(include_finished)[0]

    def job_counts(self) -> list[ClientCounts]:
        """Jobs per client name: queued, running, done, failed, cancelled."""
        return self._list(True)[1]

    def _list(self, include_finished: bool) -> tuple[list[JobInfo], list[ClientCounts]]:
        reply = self._unary("ListJobs", lambda pb: pb.ListJobsRequest(include_finished=include_finished),
                            "job list request")
        jobs = [JobInfo(j.job_id, _STATES.get(j.state, "unknown"), j.preset,
                        "batch" if j.priority == 2 else "editor", j.client_name, j.fraction, j.position,
                        j.error_code, j.message, j.submitted_unix) for j in reply.jobs]
        counts = [ClientCounts(c.client_name, c.queued, c.running, c.done, c.failed, c.cancelled)
                  for c in reply.counts]
        return jobs, counts

    def unload_models(self, key: str = "") -> tuple[int, int]:
        """Frees model memory on the daemon: (models unloaded, bytes). ``key`` "" = all."""
        reply = self._unary("UnloadModels", lambda pb: pb.UnloadModelsRequest(key=key), "unload request")
        return int(reply.unloaded), int(reply.freed_bytes)


# ------------------------------------------------------------------------------- message building


def _header(pb: Any, job: JobRequest, job_id: str) -> Any:
    h = pb.JobHeader(
        job_id=job_id,
        preset=job.preset,
        overrides={str(k): str(v) for k, v in job.overrides.items()},
        output=_OUTPUT_PB[job.output],
        priority=_PRIORITY_PB[job.priority],
        client_name=job.client_name,
        image=pb.PixelFormat(width=job.width, height=job.height, channels=job.channels,
                             bit_depth=job.bit_depth),
        image_bytes=len(job.pixels),
        image_crc32=zlib.crc32(job.pixels) & 0xFFFFFFFF,
        icc_profile=job.icc_profile or b"",
        has_mask=job.mask is not None,
        mask_crc32=zlib.crc32(job.mask) & 0xFFFFFFFF if job.mask is not None else 0,
    )
    if job.scale is not None:
        h.scale = float(job.scale)
    if job.seed is not None:
        h.seed = int(job.seed)
    if job.region is not None:
        x, y, w, hh = (int(v) for v in job.region)
        if w <= 0 or hh <= 0:
            raise Rejected(f"the region {x},{y},{w},{hh} is empty.", "invalid_argument")
        h.region.CopyFrom(pb.Region(x=x, y=y, width=w, height=hh))
    return h


def _upload(pb: Any, header: Any, job: JobRequest) -> Iterator[Any]:
    yield pb.SubmitRequest(header=header)
    for blob, data in ((pb.BLOB_IMAGE, job.pixels), (pb.BLOB_MASK, job.mask)):
        if data is None:
            continue
        view = memoryview(data).cast("B")
        for offset in range(0, len(view), CHUNK_BYTES):
            yield bulk.encode_chunk(blob, offset, view[offset:offset + CHUNK_BYTES])


def _event(msg: Any, kind: str | None, chunks: list[memoryview]) -> Event:
    base = {"job_id": msg.job_id, "seq": int(msg.seq)}
    if kind == "queued":
        return Event(EventKind.queued, position=msg.queued.position, **base)
    if kind == "started":
        return Event(EventKind.started, **base)
    if kind == "stage":
        return Event(EventKind.stage, stage=msg.stage.stage, message=msg.stage.message, **base)
    if kind == "progress":
        p = msg.progress
        return Event(EventKind.progress, stage=p.stage, step=p.step, steps=p.steps, tile=p.tile,
                     tiles=p.tiles, fraction=p.fraction, message=p.message, **base)
    if kind == "preview":
        p = msg.preview
        return Event(EventKind.preview, preview=Preview(p.width, p.height, p.pixels), **base)
    if kind == "message":
        return Event(EventKind.message, stage=msg.message.stage, message=msg.message.text, **base)
    if kind == "done":
        return Event(EventKind.done, fraction=1.0, result=_result(msg.job_id, msg.done.result, chunks),
                     **base)
    if kind == "error":
        e = msg.error
        return Event(EventKind.error, stage=e.stage, error_code=e.code or "internal",
                     message=e.message, **base)
    if kind == "cancelled":
        return Event(EventKind.cancelled, message=msg.cancelled.message, **base)
    # an event kind from a newer daemon: pass it on as a message so nothing breaks
    return Event(EventKind.message, message="", **base)


def _result(job_id: str, info: Any, chunks: list[memoryview]) -> JobResult:
    pixels = b"".join(chunks)
    if len(pixels) != info.bytes:
        raise ClientError(f"the result has {len(pixels):,} bytes, the daemon announced {info.bytes:,}.",
                          "data_loss")
    if zlib.crc32(pixels) & 0xFFFFFFFF != info.crc32:
        raise ClientError("the result's checksum does not match: the transfer was damaged.", "data_loss")
    f = info.format
    return JobResult(
        job_id=job_id, pixels=pixels, width=f.width, height=f.height, channels=f.channels,
        bit_depth=f.bit_depth, offset_x=info.offset_x, offset_y=info.offset_y,
        canvas_width=info.canvas_width, canvas_height=info.canvas_height, layer_name=info.layer_name,
        preset=info.preset, seed=int(info.seed), icc_profile=info.icc_profile or None,
        messages=list(info.messages), stage_seconds=dict(info.stage_seconds),
    )


def _server_info(r: Any) -> ServerInfo:
    presets = [
        PresetInfo(p.name, p.label, p.description, p.scale,
                   [StageInfo(s.id, s.kind, s.enabled, s.optional, dict(s.params)) for s in p.stages])
        for p in r.presets
    ]
    weights = [WeightInfo(w.key, w.description, _WEIGHT_STATUS.get(w.status, "unknown"), w.path)
               for w in r.weights]
    return ServerInfo(
        version=r.version, device=r.device, vram_free=int(r.vram_free), vram_total=int(r.vram_total),
        default_preset=r.default_preset, presets=presets, weights=weights, queue_length=r.queue_length,
        api_version=r.api_version, loaded_models={m.key: int(m.bytes) for m in r.loaded_models},
        model_budget=int(r.model_budget), max_pixels=int(r.limits.max_pixels),
        capabilities=list(r.capabilities),
    )
