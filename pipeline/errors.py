"""Every error the pipeline raises, in one place.

Each error carries a machine-readable ``code`` (the daemon maps it to a gRPC status and the plugins show
``str(err)`` unchanged), so messages must be complete sentences that tell the user what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DermisError(Exception):
    """Base class: something the user can understand and act on."""

    code = "internal"


class InvalidInput(DermisError):
    """The request itself is wrong (bad image, bad parameter, bad region)."""

    code = "invalid_argument"


class CorruptImage(InvalidInput):
    code = "corrupt_image"


class UnsupportedImage(InvalidInput):
    code = "unsupported_image"


class ImageTooLarge(InvalidInput):
    code = "image_too_large"


class InvalidParameter(InvalidInput):
    code = "invalid_parameter"


class UnknownPreset(InvalidParameter):
    code = "unknown_preset"


class MissingWeights(DermisError):
    """A model file the recipe needs was not found.

    ``looked`` lists every place that was searched, so the message can say exactly where to put the file.
    """

    code = "missing_weights"

    def __init__(self, key: str, description: str, looked: Sequence[str], hint: str = "") -> None:
        self.key = key
        self.description = description
        self.looked = list(looked)
        self.hint = hint
        places = "\n".join(f"  - {p}" for p in self.looked) or "  (no model folders are configured)"
        msg = f"Missing weights for '{key}' ({description}). Looked for:\n{places}"
        if hint:
            msg += f"\n{hint}"
        super().__init__(msg)


class MissingWeightsGroup(MissingWeights):
    """Several weights are missing at once (a recipe preflight reports all of them together)."""

    def __init__(self, missing: Sequence[MissingWeights], hint: str = "") -> None:
        self.missing = list(missing)
        self.key = ",".join(m.key for m in missing)
        self.description = "; ".join(m.description for m in missing)
        self.looked = [p for m in missing for p in m.looked]
        self.hint = hint
        parts = [str(m) for m in missing]
        if hint:
            parts.append(hint)
        Exception.__init__(self, "\n".join(parts))


class WrongWeights(DermisError):
    """A weights file exists but is not what the stage needs (wrong architecture, missing keys...)."""

    code = "wrong_weights"

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
    code = "stage_unavailable"


class OutOfMemory(DermisError):
    code = "out_of_memory"


class Cancelled(DermisError):
    """Raised at the next step/tile boundary after a job was cancelled."""

    code = "cancelled"

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
