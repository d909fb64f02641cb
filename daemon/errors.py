"""Errors of the daemon's own making (the pipeline's are in pipeline/errors.py).

Each names its ``pipeline.errors.ErrorCode``: daemon/server/servicer.py answers with the code's status,
the CLI picks its exit status from it and the watch folder decides from it whether to retry; clients
show ``str(err)`` unchanged.
"""

from __future__ import annotations

from pipeline import DermisError
from pipeline.errors import ErrorCode


class QueueFull(DermisError):
    code = ErrorCode.QUEUE_FULL


class TooManyCalls(DermisError):
    """Every slot for this kind of streaming call (Watch, Submit) is taken."""

    code = ErrorCode.TOO_MANY_CALLS


class UploadStalled(DermisError):
    """An upload sent nothing for the stall timeout; it is dropped (never queued)."""

    code = ErrorCode.UPLOAD_STALLED


class SharedMemoryUnavailable(DermisError):
    """A shared-memory upload's file is missing or not acceptable; the client streams instead."""

    code = ErrorCode.SHARED_MEMORY_UNAVAILABLE


class JobExists(DermisError):
    """A client reused a job id for a different request."""

    code = ErrorCode.ALREADY_EXISTS


class UnknownJob(DermisError):
    code = ErrorCode.NOT_FOUND


class ShuttingDown(DermisError):
    code = ErrorCode.SHUTTING_DOWN


class BadUpload(DermisError):
    """The uploaded chunks do not add up to what the header announced."""

    code = ErrorCode.INVALID_ARGUMENT


class ResultExpired(DermisError):
    code = ErrorCode.RESULT_EXPIRED


class JobFailed(DermisError):
    """A job the daemon's executor ran ended with an error (the watch folder waits for these): carries
    the executor's code, which arrives as the string stored on the job."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode.of(code)


class InstallError(DermisError):
    """`dermis install-plugin` could not do its work (foreign files in the way, no wheels, no access)."""

    code = ErrorCode.INSTALL_FAILED


class NeedsWholeDevice(Exception):
    """An editor job ran out of memory while a paused batch job still holds its models.

    Not a DermisError: it is control flow inside the executor and never reaches a client. The executor
    restarts the batch job later and runs the editor job again with the device to itself.
    """


class Preempted(Exception):
    """Raised at a batch job's step boundary so it unwinds and frees the device (see NeedsWholeDevice)."""
