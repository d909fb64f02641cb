"""Every error the pipeline raises, and every error code in Dermis, in one place.

Each error carries a ``code`` from ``ErrorCode``: the daemon answers with the code's status and sends
the code along (the plugins show ``str(err)`` unchanged), the CLI picks its exit status from what
ends it (``fix``) and the watch folder decides from it whether another attempt can help. So messages must be complete sentences
that tell the user what to do, and a new kind of failure is a new member here, not a new string.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path


class Fix(enum.Enum):
    """What ends an error: the user changes the request's options, gives another input, or fixes the
    set-up (weights, config, install); or nothing the user does (wait, try again, report a bug)."""

    REQUEST = "request"
    INPUT = "input"
    SETUP = "setup"
    NOTHING = "nothing"


class ErrorCode(enum.StrEnum):
    """A machine-readable error code (the string on the wire, in journals and logs) with what it means.

    ``status`` is the canonical RPC status the daemon answers with (a google.rpc.Code name, so the
    library needs no gRPC); ``fix`` says what ends it, hence ``user_fixable``; ``retryable`` whether
    trying the same request again may succeed. The CLI exits with 2 when the request's options must
    change (``Fix.REQUEST``, a usage error), 1 otherwise; the watch folder retries what is retryable.
    """

    _value_: str
    status: str
    fix: Fix
    retryable: bool

    def __new__(cls, value: str, status: str, fix: Fix, retryable: bool) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.fix = fix
        member.retryable = retryable
        return member

    @property
    def user_fixable(self) -> bool:
        return self.fix is not Fix.NOTHING

    #                    wire code             status                 fix          retryable
    # the request is wrong: the client must change it
    INVALID_ARGUMENT = "invalid_argument", "INVALID_ARGUMENT", Fix.REQUEST, False
    INVALID_PARAMETER = "invalid_parameter", "INVALID_ARGUMENT", Fix.REQUEST, False
    UNKNOWN_PRESET = "unknown_preset", "INVALID_ARGUMENT", Fix.REQUEST, False
    CORRUPT_IMAGE = "corrupt_image", "INVALID_ARGUMENT", Fix.INPUT, False
    UNSUPPORTED_IMAGE = "unsupported_image", "INVALID_ARGUMENT", Fix.INPUT, False
    IMAGE_TOO_LARGE = "image_too_large", "INVALID_ARGUMENT", Fix.INPUT, False
    # the set-up lacks something: the user fixes the install or the config, not the request
    MISSING_WEIGHTS = "missing_weights", "FAILED_PRECONDITION", Fix.SETUP, False
    WRONG_WEIGHTS = "wrong_weights", "FAILED_PRECONDITION", Fix.SETUP, False
    STAGE_UNAVAILABLE = "stage_unavailable", "FAILED_PRECONDITION", Fix.SETUP, False
    INSTALL_FAILED = "install_failed", "FAILED_PRECONDITION", Fix.SETUP, False  # `dermis install-plugin`
    # model downloads (`dermis models get`, the daemon's FetchModels jobs)
    GATED_MODEL = "gated_model", "PERMISSION_DENIED", Fix.SETUP, False  # accept the licence, log in
    NOT_ENOUGH_SPACE = "not_enough_space", "RESOURCE_EXHAUSTED", Fix.SETUP, False
    LICENCE_NOT_ACCEPTED = "licence_not_accepted", "FAILED_PRECONDITION", Fix.REQUEST, False
    NETWORK_UNAVAILABLE = "network_unavailable", "UNAVAILABLE", Fix.SETUP, True  # offline, host unreachable
    CHECKSUM_MISMATCH = "checksum_mismatch", "DATA_LOSS", Fix.NOTHING, True  # damaged or changed download
    DOWNLOAD_FAILED = "download_failed", "UNAVAILABLE", Fix.NOTHING, True
    # a limit or a busy device: later (or smaller, or with other programs closed) may work
    QUEUE_FULL = "queue_full", "RESOURCE_EXHAUSTED", Fix.NOTHING, True
    TOO_MANY_CALLS = "too_many_calls", "RESOURCE_EXHAUSTED", Fix.NOTHING, True  # open streams at their cap
    UPLOAD_STALLED = "upload_stalled", "ABORTED", Fix.NOTHING, True  # no chunk for the stall timeout
    OUT_OF_MEMORY = "out_of_memory", "RESOURCE_EXHAUSTED", Fix.SETUP, True
    SHUTTING_DOWN = "shutting_down", "UNAVAILABLE", Fix.NOTHING, True
    # jobs: ids, results and their end
    ALREADY_EXISTS = "already_exists", "ALREADY_EXISTS", Fix.REQUEST, False
    NOT_FOUND = "not_found", "NOT_FOUND", Fix.REQUEST, False
    RESULT_EXPIRED = "result_expired", "FAILED_PRECONDITION", Fix.REQUEST, False
    CANCELLED = "cancelled", "CANCELLED", Fix.NOTHING, False
    # the shared-memory upload's file is not there or not right: the client streams the pixels instead
    SHARED_MEMORY_UNAVAILABLE = "shared_memory_unavailable", "FAILED_PRECONDITION", Fix.NOTHING, False
    # the watch folder's own verdicts on a file (journal and .error.txt, never raised)
    CRASHED = "crashed", "INTERNAL", Fix.NOTHING, False  # every attempt died with the process
    MISSING = "missing", "NOT_FOUND", Fix.INPUT, False  # the claimed file was removed by hand
    WRITE_FAILED = "write_failed", "RESOURCE_EXHAUSTED", Fix.SETUP, True  # full disk, output folder gone
    # a bug or something unforeseen: another attempt may get through
    INTERNAL = "internal", "INTERNAL", Fix.NOTHING, True

    @classmethod
    def of(cls, code: str) -> ErrorCode:
        """The member for a code string; INTERNAL for one this version does not know."""
        try:
            return cls(code)
        except ValueError:
            return cls.INTERNAL


ECHO_LIMIT = 80  # characters of a client's value an error message may repeat


def quoted(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value someone sent, as an error message repeats it: its repr, cut to ``limit`` characters.

    Messages travel back as gRPC status details (a header with a size limit) and into logs, so a 1 MB
    job id or a 10 kB preset name must not be echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DermisError(Exception):
    """Base class: something the user can understand and act on."""

    code: ErrorCode = ErrorCode.INTERNAL


class InvalidInput(DermisError):
    """The request itself is wrong (bad image, bad parameter, bad region)."""

    code = ErrorCode.INVALID_ARGUMENT


class CorruptImage(InvalidInput):
    code = ErrorCode.CORRUPT_IMAGE


class UnsupportedImage(InvalidInput):
    code = ErrorCode.UNSUPPORTED_IMAGE


class ImageTooLarge(InvalidInput):
    code = ErrorCode.IMAGE_TOO_LARGE


class InvalidParameter(InvalidInput):
    code = ErrorCode.INVALID_PARAMETER


class UnknownPreset(InvalidParameter):
    code = ErrorCode.UNKNOWN_PRESET


class MissingWeights(DermisError):
    """A model file the recipe needs was not found.

    The message is one line: the weights key and the file that fills it (``expected``: where it goes
    in a ComfyUI models folder, from the catalogue). ``looked`` keeps every place that was searched,
    for `dermis doctor --verbose`. How to get the file is for each front end to say (the CLI names
    `dermis models get`, the plugins their download button), so no command or option is named here.
    """

    code = ErrorCode.MISSING_WEIGHTS

    def __init__(self, key: str, description: str, looked: Sequence[str], hint: str = "",
                 expected: str = "") -> None:
        self.key = key
        self.description = description
        self.looked = list(looked)
        self.hint = hint
        self.expected = expected
        self.preset = ""
        super().__init__(f"Missing weights '{key}': {self.line()}" + (f" {hint}" if hint else ""))

    def line(self) -> str:
        """What is missing, in a few words: the expected file, else the description."""
        return self.expected or self.description


class MissingWeightsGroup(MissingWeights):
    """Several weights a preset needs are missing (a recipe preflight reports all of them together):
    a header, one line per file, and nothing else."""

    def __init__(self, missing: Sequence[MissingWeights], preset: str = "") -> None:
        self.missing = list(missing)
        self.key = ",".join(m.key for m in missing)
        self.description = "; ".join(m.description for m in missing)
        self.looked = [p for m in missing for p in m.looked]
        self.hint = ""
        self.expected = ""
        self.preset = preset
        count = f"{len(missing)} model file{'s' if len(missing) != 1 else ''}"
        head = (f"Missing weights: preset '{preset}' cannot run without {count} (the 'lite' preset needs none):"
                if preset else f"Missing weights: {count}:")
        Exception.__init__(self, "\n".join([head, *(f"  - {m.key}: {m.line()}" for m in missing)]))


class WrongWeights(DermisError):
    """A weights file exists but is not what the stage needs (wrong architecture, missing keys...)."""

    code = ErrorCode.WRONG_WEIGHTS

    def __init__(
        self,
        path: Path | str,
        reason: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        limit: int = 20,
    ) -> None:
        self.path = Path(path)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        msg = f"{self.path}: {reason}"
        for label, keys in (("missing keys", self.missing), ("unexpected keys", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:limit])
                more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
                msg += f"\n  {label} ({len(keys)}): {shown}{more}"
        super().__init__(msg)


class StageUnavailable(DermisError):
    code = ErrorCode.STAGE_UNAVAILABLE


class DownloadFailed(DermisError):
    """A model download did not complete (the server refused or broke off); a retry resumes it."""

    code = ErrorCode.DOWNLOAD_FAILED


class NetworkUnavailable(DownloadFailed):
    """No connection to the model's host, or downloads are switched off (HF_HUB_OFFLINE)."""

    code = ErrorCode.NETWORK_UNAVAILABLE


class GatedModel(DownloadFailed):
    """The Hub repository asks its users to accept a licence, and this user has not (or is not logged in)."""

    code = ErrorCode.GATED_MODEL


class NotEnoughSpace(DownloadFailed):
    code = ErrorCode.NOT_ENOUGH_SPACE


class ChecksumMismatch(DownloadFailed):
    """A downloaded file is not the one the catalogue (or the Hub) names: refused and removed."""

    code = ErrorCode.CHECKSUM_MISMATCH


class LicenceNotAccepted(DownloadFailed):
    code = ErrorCode.LICENCE_NOT_ACCEPTED


class OutOfMemory(DermisError):
    code = ErrorCode.OUT_OF_MEMORY


class Cancelled(DermisError):
    """Raised at the next step/tile boundary after a job was cancelled."""

    code = ErrorCode.CANCELLED

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
