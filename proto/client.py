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

import abc
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from . import bulk, messages
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
    ModelFile,
    ModelPlan,
    PresetInfo,
    Preview,
    Rejected,
    ServerInfo,
    StageInfo,
    Unauthenticated,
    WatchFolderCounts,
    WeightInfo,
)
from .discovery import TOKEN_ENV, default_runtime_file, find_daemon, read_runtime_file
from .messages import CHUNK_BYTES

__all__ = [
    "CHUNK_BYTES", "DEFAULT_PRIORITY", "Client", "ClientCounts", "DaemonClient", "ClientError", "DaemonUnavailable",
    "DependencyMissing", "Event", "EventKind", "JobCancelled", "JobFailed", "JobInfo", "JobRequest",
    "JobResult", "ModelFile", "ModelPlan", "PresetInfo", "Preview", "Rejected", "ServerInfo", "StageInfo",
    "Unauthenticated", "WatchFolderCounts", "WeightInfo", "default_runtime_file", "read_runtime_file",
]

# Both directions allow messages well above one chunk (plus header and ICC profile), so an image of
# any size goes through as a stream of small messages; nothing is ever sent as one big message.
MAX_MESSAGE_BYTES = 16 << 20
ERROR_CODE_KEY = "dermis-error-code"  # trailing metadata with the daemon's machine-readable code
_WATCH_RETRIES = 3  # reconnects of one watch() after the stream broke (daemon restart: NOT_FOUND)
# status codes that mean "the daemon refused this request", not "the daemon is gone"
_REFUSALS = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "ALREADY_EXISTS",
             "OUT_OF_RANGE", "NOT_FOUND", "PERMISSION_DENIED")


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


_Self = TypeVar("_Self", bound="DaemonClient")


class DaemonClient(abc.ABC):
    """What a plugin (and `dermis upscale --server`) needs from a daemon connection: the gRPC
    ``Client`` below, or a scripted stand-in in tests (tests/fake_daemon.py). Blocking calls."""

    @abc.abstractmethod
    def submit(self, job: JobRequest) -> str:
        """Upload the job; its id once the daemon has queued it."""

    @abc.abstractmethod
    def watch(self, job_id: str, after_seq: int = 0) -> Iterator[Event]:
        """The job's events after ``after_seq``, ending after done / error / cancelled."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the daemon to stop the job (safe from another thread while one is in ``watch``)."""

    @abc.abstractmethod
    def info(self) -> ServerInfo:
        """The daemon's version, device, presets and weights."""

    @abc.abstractmethod
    def close(self) -> None:
        """End open watches and the connection."""

    @abc.abstractmethod
    def plan_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "") -> ModelPlan:
        """What a model download for ``preset`` (or the weights keys ``roles``) would fetch, and what
        must be placed by hand; nothing starts (FetchModels with dry_run)."""

    @abc.abstractmethod
    def fetch_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "", *,
                     accept_licences: bool = False, job_id: str | None = None, client_name: str = "") -> str:
        """Start downloading what is missing in the daemon; the job's id (``watch`` it, ``cancel`` it)."""

    def find_faces(self, pixels: bytes, width: int, height: int, channels: int) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in a small 8-bit RGB(A) picture (at most 4 MP), largest first."""
        raise ClientError("this client cannot search for faces.", "unimplemented")

    def run(self, job: JobRequest, on_event: Callable[[Event], None] | None = None) -> JobResult:
        """submit + watch: returns the result, raises JobFailed / JobCancelled."""
        return self.follow(self.submit(job), on_event)

    def follow(self, job_id: str, on_event: Callable[[Event], None] | None = None) -> JobResult:
        """Watch a job to its end (e.g. a ``fetch_models`` download): its result (no pixels for a
        download, its notes in ``messages``), or JobFailed / JobCancelled."""
        return _outcome(self.watch(job_id), on_event, "the job finished")

    def fetch_result(self, job_id: str) -> JobResult:
        """The result of a finished job the daemon still holds (downloads it again)."""
        return _outcome(self.watch(job_id), None, "the result came")

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(DaemonClient):
    """A connection to one daemon over gRPC. Nothing connects until the first call."""

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
                self.address, self._token = find_daemon(self._address_arg, self._token_arg)
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
        return messages.server_info(self._unary("GetServerInfo", lambda pb: pb.GetServerInfoRequest(),
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
                reply = self._submit_call(messages.upload(pb, messages.header(pb, job, job_id), job),
                                          timeout=deadline,
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
                    event = messages.event(msg, chunks)
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

    def list_jobs(self, include_finished: bool = False) -> list[JobInfo]:
        return messages.jobs(self._list_reply(include_finished))

    def watch_folders(self) -> list[WatchFolderCounts]:
        """The daemon's watch folders and their files by state (pending, running, done, skipped, failed)."""
        return messages.folder_counts(self._list_reply(False))

    def job_counts(self) -> list[ClientCounts]:
        """Jobs per client name: queued, running, done, failed, cancelled."""
        return messages.client_counts(self._list_reply(True))

    def _list_reply(self, include_finished: bool) -> Any:
        return self._unary("ListJobs", lambda pb: pb.ListJobsRequest(include_finished=include_finished),
                           "job list request")

    def plan_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "") -> ModelPlan:
        return messages.model_plan(self._fetch(preset, roles, variant, True, False, "", ""))

    def fetch_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "", *,
                     accept_licences: bool = False, job_id: str | None = None, client_name: str = "") -> str:
        reply = self._fetch(preset, roles, variant, False, accept_licences, job_id or uuid.uuid4().hex, client_name)
        return str(reply.job_id)

    def _fetch(self, preset: str, roles: Iterable[str], variant: str, dry_run: bool, accept: bool, job_id: str,
               client_name: str) -> Any:
        return self._unary("FetchModels", lambda pb: messages.fetch_request(
            pb, preset=preset, roles=list(roles), variant=variant, dry_run=dry_run, accept_licences=accept,
            job_id=job_id, client_name=client_name), "model download request")

    def find_faces(self, pixels: bytes, width: int, height: int, channels: int) -> list[tuple[int, int, int, int]]:
        return [(int(r.x), int(r.y), int(r.width), int(r.height)) for r in self._unary(
            "FindFaces", lambda pb: pb.FindFacesRequest(
                image=pb.PixelFormat(width=width, height=height, channels=channels, bit_depth=8),
                pixels=bytes(pixels)), "face search").faces]

    def unload_models(self, key: str = "") -> tuple[int, int]:
        """Frees model memory on the daemon: (models unloaded, bytes). ``key`` "" = all."""
        reply = self._unary("UnloadModels", lambda pb: pb.UnloadModelsRequest(key=key), "unload request")
        return int(reply.unloaded), int(reply.freed_bytes)


def _outcome(events: Iterable[Event], on_event: Callable[[Event], None] | None, until: str) -> JobResult:
    """The result a job's events end with, or its JobFailed / JobCancelled."""
    for event in events:
        if on_event is not None:
            on_event(event)
        if event.kind is EventKind.done and event.result is not None:
            return event.result
        if event.kind is EventKind.error:
            raise JobFailed(event.message or "The job failed.", event.error_code or "internal")
        if event.kind is EventKind.cancelled:
            raise JobCancelled(event.message or "The job was cancelled.")
    raise ClientError(f"the client was closed before {until}.", "closed")
