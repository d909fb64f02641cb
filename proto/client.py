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

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import bulk, messages, shm
from .client_base import (
    BREAKS,
    CLIENT_ID_KEY,
    MAX_MESSAGE_BYTES,
    RECONNECT_S,
    SCOPE_KEY,
    DaemonClient,
    check_client_id,
    error_for,
    grpc_modules,
    status_of,
)
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
    JobLost,
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
    WorkerInfo,
)
from .discovery import default_runtime_file, find_daemon, read_runtime_file
from .messages import CHUNK_BYTES

__all__ = [
    "CHUNK_BYTES", "DEFAULT_PRIORITY", "Client", "ClientCounts", "DaemonClient", "ClientError", "DaemonUnavailable",
    "DependencyMissing", "Event", "EventKind", "JobCancelled", "JobFailed", "JobInfo", "JobLost", "JobRequest",
    "JobResult", "ModelFile", "ModelPlan", "PresetInfo", "Preview", "Rejected", "ServerInfo", "StageInfo", "WorkerInfo",
    "Unauthenticated", "WatchFolderCounts", "WeightInfo", "default_runtime_file", "read_runtime_file",
]


class Client(DaemonClient):
    """A connection to one daemon over gRPC. Nothing connects until the first call.

    ``client_id`` files this client's jobs (default: a new random id): only a client with the same id
    lists, watches, cancels and fetches them; a plug-in that keeps its id finds its jobs after a
    restart. ``admin=True`` sees every client's jobs (`dermis status`). When a job's event stream
    breaks, ``watch`` reconnects for at most ``reconnect_s`` seconds (the daemon restarting, say) and
    then raises ``JobLost``. ``shared_memory`` lets uploads and results of 1 MiB and more go through a
    shared-memory file when the daemon runs on this machine as the same user (proto/shm.py).
    """

    def __init__(self, address: str | None = None, token: str | None = None, *,
                 timeout: float = 10.0, client_id: str | None = None, admin: bool = False,
                 reconnect_s: float = RECONNECT_S, shared_memory: bool = True) -> None:
        self._address_arg = address
        self._token_arg = token
        self.timeout = timeout
        self.client_id = check_client_id(client_id) if client_id else uuid.uuid4().hex
        self.admin = admin
        self.reconnect_s = reconnect_s
        self.shared_memory = shared_memory
        self.address = ""  # the resolved gRPC target, once connected
        self._token: str | None = None
        self._channel: Any = None
        self._stub: Any = None
        self._submit_call: Any = None
        self._watch_call: Any = None
        self._shm_folder: Any = None  # the daemon's shared-memory folder: None = not asked yet, False = none
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
        grpc, pb, pb_grpc = grpc_modules()
        with self._lock:
            if self._closed:
                raise ClientError("this client was closed.", "closed")
            if self._rediscover and not (self._address_arg and self._token_arg):
                # a restarted daemon has a new token (and maybe a new port): look again
                self._rediscover = False
                if self._channel is not None:  # every call on it broke with the daemon
                    self._channel.close()
                self._channel = self._stub = None
            if self._stub is None:
                self.address, self._token = find_daemon(self._address_arg, self._token_arg)
                self._shm_folder = None
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
        md = [(CLIENT_ID_KEY, self.client_id)]
        if self._token:
            md.append(("authorization", f"Bearer {self._token}"))
        if self.admin:
            md.append((SCOPE_KEY, "all"))
        return tuple(md)

    def _shared_folder(self) -> Path | None:
        """The daemon's shared-memory folder when this process can use it (asked once per connection)."""
        if not self.shared_memory or self._shm_folder is False:
            return None
        if self._shm_folder is None:
            try:
                self._shm_folder = shm.usable_dir(self.info().shared_memory_dir) or False
            except ClientError:  # asked again after the next (re)connect
                self._shm_folder = False
                return None
        return self._shm_folder or None

    def _error(self, e: Any, what: str) -> ClientError:
        """A grpc.RpcError as the ClientError a plugin can show."""
        status, details, code = status_of(e)
        if status in ("UNAUTHENTICATED", "UNAVAILABLE") and not code:
            self._rediscover = True
        return error_for(status, details, code, what=what, address=self.address,
                         has_token=bool(self._token), closed=self._closed)

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
        """Uploads the job (a shared-memory file, else <= 1 MiB chunks); its id once the daemon has
        queued it."""
        job.check()
        job_id = job.job_id or uuid.uuid4().hex
        nbytes = len(job.pixels) + len(job.mask or b"")
        # an upload deadline that grows with the size: ~25 MB/s is far below loopback speed
        deadline = self.timeout + nbytes / 25e6
        busy_until = time.monotonic() + self.timeout  # how long to wait while every upload slot is taken
        retried = False
        while True:
            grpc, pb, _stub = self._connect()
            folder = self._shared_folder() if nbytes >= shm.MIN_BYTES else None
            shm_id = ""
            try:
                header = messages.header(pb, job, job_id)
                if folder is not None:
                    shm_id = shm.write_new(folder, [job.pixels] + ([job.mask] if job.mask is not None else []))
                    header.shared_memory_id = shm_id
                    stream: Iterator[Any] = iter([pb.SubmitRequest(header=header)])
                else:
                    stream = messages.upload(pb, header, job)
                reply = self._submit_call(stream, timeout=deadline, metadata=self._metadata(),
                                          wait_for_ready=True)
                return str(reply.job_id)
            except OSError:  # the memory file system is full or gone: stream instead
                self._shm_folder = False
                continue
            except grpc.RpcError as e:
                err = self._error(e, "job upload")
            finally:
                if shm_id and folder is not None:
                    shm.remove(folder, shm_id)
            if err.code == "shared_memory_unavailable":  # another machine after all, say: stream
                self._shm_folder = False
                continue
            if err.code == "too_many_calls" and time.monotonic() < busy_until:  # others are uploading
                time.sleep(0.2)
                continue
            if isinstance(err, Unauthenticated) and self._rediscover and not retried:
                retried = True  # a restarted daemon: its token (and address) found again
                continue
            raise err

    def watch(self, job_id: str, after_seq: int = 0) -> Iterator[Event]:
        """Events of one job, ending after done / error / cancelled. When the stream breaks it
        reconnects (finding a restarted daemon and its new token) for at most ``reconnect_s`` s; a
        daemon that does not come back, or comes back without the job, ends it with JobLost."""
        last = after_seq
        broke: float | None = None  # when the stream broke (monotonic); None while it flows
        was_broken = False
        while True:
            if broke is not None and not self._reconnected(broke, job_id):
                continue
            grpc, pb, _stub = self._connect()
            folder = self._shared_folder()
            call = self._watch_call(pb.WatchRequest(job_id=job_id, after_seq=last,
                                                    result_in_shared_memory=folder is not None),
                                    metadata=self._metadata())
            with self._lock:
                if self._closed:
                    call.cancel()
                    return
                self._calls.add(call)
            chunks: list[Any] = []
            try:
                for msg in call:
                    broke = None
                    if isinstance(msg, bulk.RawResultChunk):
                        if msg.offset != sum(len(c) for c in chunks):
                            raise ClientError(f"result chunk at byte {msg.offset}: the stream is damaged.",
                                              "data_loss")
                        chunks.append(msg.data)
                        continue
                    if msg.WhichOneof("kind") == "done" and msg.done.result.shared_memory_id:
                        chunks = [self._collect(folder, msg.done.result)]
                        if chunks[0] is None:  # unreadable: fetch the result again as chunks
                            last = msg.seq - 1
                            break
                    event = messages.event(msg, chunks)
                    chunks, last = [], event.seq
                    yield event
                    if event.kind in TERMINAL:
                        return
                else:  # the stream ended before the job did: as if it broke
                    if self._closed:
                        return
                    broke, was_broken = broke or time.monotonic(), True
                continue
            except grpc.RpcError as e:
                if self._closed:
                    return
                status, _details, code = status_of(e)
                if status == "NOT_FOUND" and was_broken:
                    raise JobLost(f"The Dermis daemon at {self.address} restarted and job {job_id} was lost "
                                  "with it (a restart forgets every job); submit it again.") from None
                if status == "UNAUTHENTICATED" and was_broken and self._address_arg and self._token_arg:
                    raise JobLost(f"The Dermis daemon at {self.address} restarted (it no longer accepts this "
                                  f"client's token) and job {job_id} was lost with it; submit it again.") from None
                if status not in BREAKS or code or (status == "UNAUTHENTICATED" and not was_broken):
                    raise self._error(e, "watch") from None
                broke, was_broken = broke or time.monotonic(), True
            finally:
                call.cancel()
                with self._lock:
                    self._calls.discard(call)

    def _reconnected(self, broke: float, job_id: str) -> bool:
        """After a break: True once a daemon is there again (found anew: a restarted one has a new
        token); False after a pause to try again; JobLost once ``reconnect_s`` have passed."""
        self._rediscover = True
        try:
            grpc, _pb, _stub = self._connect()
            grpc.channel_ready_future(self._channel).result(timeout=min(1.0, self._left(broke, job_id)))
            return True
        except (DaemonUnavailable, grpc_modules()[0].FutureTimeoutError):
            time.sleep(min(0.5, self._left(broke, job_id)))
            self._left(broke, job_id)
            return False

    def _collect(self, folder: Path | None, info: Any) -> bytes | None:
        """A result's pixels from its shared-memory file (removed after); None if that failed."""
        try:
            if folder is None:
                raise shm.SharedMemoryError("no shared-memory folder")
            return shm.read_and_remove(folder, info.shared_memory_id, int(info.bytes))
        except OSError:
            self._shm_folder = False
            return None

    def _left(self, broke: float, job_id: str) -> float:
        """Seconds left to find the daemon again; JobLost when none are."""
        left = self.reconnect_s - (time.monotonic() - broke)
        if left <= 0:
            raise JobLost(f"The Dermis daemon at {self.address or 'its address'} went away while job {job_id} "
                          f"was running and did not come back within {self.reconnect_s:g} s; the job is lost. "
                          "Start the daemon (`dermis serve`) and submit the job again.")
        return left

    def cancel(self, job_id: str) -> None:
        self._unary("Cancel", lambda pb: pb.CancelRequest(job_id=job_id), "cancel")

    def list_jobs(self, include_finished: bool = False) -> list[JobInfo]:
        """This client's jobs (every client's with ``admin=True``)."""
        return messages.jobs(self._list_reply(include_finished))

    def watch_folders(self) -> list[WatchFolderCounts]:
        """The daemon's watch folders and their files by state (pending, running, done, skipped, failed)."""
        return messages.folder_counts(self._list_reply(False))

    def job_counts(self) -> list[ClientCounts]:
        """Jobs per client name, over every client: queued, running, done, failed, cancelled."""
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
