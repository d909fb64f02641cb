"""The thin client's foundations: grpc imported lazily, the ``DaemonClient`` interface plugins program
against, and how a gRPC status becomes the ``ClientError`` a plugin shows (proto/client.py has the
gRPC ``Client``). Standard library only at import, Python 3.10 syntax (the editors' Pythons).
"""

from __future__ import annotations

import abc
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .client_types import (
    ClientError,
    DaemonUnavailable,
    DependencyMissing,
    Event,
    EventKind,
    JobCancelled,
    JobFailed,
    JobRequest,
    JobResult,
    ModelPlan,
    Rejected,
    ServerInfo,
    Unauthenticated,
)
from .discovery import TOKEN_ENV, default_runtime_file

# Both directions allow messages well above one chunk (plus header and ICC profile), so an image of
# any size goes through as a stream of small messages; nothing is ever sent as one big message.
MAX_MESSAGE_BYTES = 16 << 20
ERROR_CODE_KEY = "dermis-error-code"  # trailing metadata with the daemon's machine-readable code
RECONNECT_S = 35.0  # s a broken watch() looks for the daemon again before it gives up (JobLost)
CLIENT_ID_KEY = "dermis-client-id"  # metadata: whose jobs (daemon/server/callers.py)
SCOPE_KEY = "dermis-scope"  # metadata "all": every client's jobs
# status codes that mean "the daemon refused this request", not "the daemon is gone"
REFUSALS = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "ALREADY_EXISTS",
            "OUT_OF_RANGE", "NOT_FOUND", "PERMISSION_DENIED")
# statuses (without a Dermis code) of a stream that broke under the client: the daemon went away,
# the channel closed, or a restarted daemon no longer knows the token
BREAKS = ("UNAVAILABLE", "CANCELLED", "UNKNOWN", "UNAUTHENTICATED")


# ------------------------------------------------------------------------------------ grpc, lazily


def grpc_modules() -> tuple[Any, Any, Any]:
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
        return outcome(self.watch(job_id), on_event, "the job finished")

    def fetch_result(self, job_id: str) -> JobResult:
        """The result of a finished job the daemon still holds (downloads it again)."""
        return outcome(self.watch(job_id), None, "the result came")

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def status_of(e: Any) -> tuple[str, str, str]:
    """(status name, details, Dermis error code) of a grpc.RpcError."""
    status = e.code().name if hasattr(e, "code") and e.code() is not None else "UNKNOWN"
    details = (e.details() if hasattr(e, "details") else "") or ""
    code = ""
    for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if key == ERROR_CODE_KEY:
            code = value
    return status, details, code


def error_for(status: str, details: str, code: str, *, what: str, address: str, has_token: bool,
              closed: bool) -> ClientError:
    """A refused or failed call as the ClientError a plugin can show."""
    if status == "UNAUTHENTICATED":
        how = "no token was found" if not has_token else "the token is not this daemon's"
        return Unauthenticated(
            f"The Dermis daemon at {address} refused the {what} ({how}). The client reads the "
            f"token from ${TOKEN_ENV} or the file named in {default_runtime_file()}; a restarted "
            "daemon writes a new one.")
    if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        if code:  # the daemon itself said why (e.g. it is shutting down)
            return DaemonUnavailable(details, code)
        return DaemonUnavailable(
            f"No Dermis daemon answered at {address} ({what}: {details or status}). "
            "Start it with `dermis serve`.")
    if status == "CANCELLED" and closed:
        return ClientError("the client was closed.", "closed")
    if status in REFUSALS:
        return Rejected(details or status, code or status.lower())
    return ClientError(details or f"{what} failed ({status}).", code or status.lower())


def check_client_id(client_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", client_id):
        raise ClientError(f"client_id {client_id[:80]!r} is not valid: use 1-64 characters from "
                          "A-Z a-z 0-9 . _ : -.", "invalid_argument")
    return client_id


def outcome(events: Iterable[Event], on_event: Callable[[Event], None] | None, until: str) -> JobResult:
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
