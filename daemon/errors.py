"""Errors of the daemon's own making (the pipeline's are in pipeline/errors.py).

Each has a ``code`` like the pipeline's errors; daemon/server/servicer.py maps every code to a gRPC status in
one table, and clients show ``str(err)`` unchanged.
"""

from __future__ import annotations

from pipeline import DermisError


class QueueFull(DermisError):
    code = "queue_full"


class JobExists(DermisError):
    """A client reused a job id for a different request."""

    code = "already_exists"


class UnknownJob(DermisError):
    code = "not_found"


class ShuttingDown(DermisError):
    code = "shutting_down"


class BadUpload(DermisError):
    """The uploaded chunks do not add up to what the header announced."""

    code = "invalid_argument"


class ResultExpired(DermisError):
    code = "result_expired"


class NeedsWholeDevice(Exception):
    """An editor job ran out of memory while a paused batch job still holds its models.

    Not a DermisError: it never reaches a client. The executor restarts the batch job later and runs
    the editor job again with the device to itself.
    """


class Preempted(Exception):
    """Raised at a batch job's step boundary so it unwinds and frees the device (see NeedsWholeDevice)."""
