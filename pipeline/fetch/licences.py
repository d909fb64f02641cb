"""Which non-commercial licences the user has accepted, per model, in Dermis's state folder.

`dermis models get` shows the licence of each non-commercial model before its first download and asks;
the daemon's FetchModels takes the plugin's confirmation. Either way the acceptance is remembered here
(``accepted-licences.json``: model -> licence name and when), so it is asked once per model, and again
only if the catalogue's licence for it changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import platformdirs

from ..config import APP
from ..files import write_atomic
from ..models.catalogue import CatalogueFile


def state_path() -> Path:
    return Path(platformdirs.user_state_dir(APP)) / "accepted-licences.json"


def model_key(entry: CatalogueFile) -> str:
    return f"{entry.role}/{entry.variant}"


def _read() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def unaccepted(entries: Iterable[CatalogueFile]) -> list[CatalogueFile]:
    """The non-commercial ones whose licence the user has not accepted yet (each model once)."""
    seen = _read()
    out: list[CatalogueFile] = []
    for e in entries:
        record = seen.get(model_key(e))
        if e.non_commercial and not (isinstance(record, dict) and record.get("licence") == e.licence):
            if e not in out:
                out.append(e)
    return out


def accept(entries: Iterable[CatalogueFile]) -> None:
    data = _read()
    for e in entries:
        data[model_key(e)] = {"licence": e.licence, "accepted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))
