"""Carry out a ``FetchPlan``: licences, sizes, free space, then one download after another.

The same function serves `dermis models get` (a terminal asks the questions) and the daemon's
FetchModels job (the plugin asked them before): what to ask is passed in as callables. Nothing is
downloaded until every file's server has answered, the non-commercial licences are accepted and the
disk has room for all of it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, LicenceNotAccepted, NotEnoughSpace
from ..models.catalogue import CatalogueFile, human_bytes
from ..progress import CancelToken, Progress, ProgressFn, no_progress
from . import licences
from .plan import FetchItem, FetchPlan
from .sources import Remote, locate
from .transfer import download, partial_path

LARGE_BYTES = 10 * 10**9  # more than this is asked for first (`--yes` skips the question)
SPACE_RESERVE = 64 << 20  # bytes left free on the disk after the downloads


@dataclass(frozen=True)
class Fetched:
    role: str
    path: Path
    size: int
    checked: str  # "sha256 (catalogue, hub)", or "size" when nobody states a sha256


def free_bytes(folder: Path) -> int:
    """Free space on the disk ``folder`` will be on (its nearest existing parent's)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return shutil.disk_usage(Path.cwd()).free


def fetch(
    plan: FetchPlan,
    *,
    accept: Callable[[list[CatalogueFile]], bool],
    confirm: Callable[[int], bool] = lambda nbytes: True,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> list[Fetched]:
    """Download ``plan.downloads``. ``accept(entries)`` is asked for the non-commercial licences not yet
    accepted; ``confirm(bytes)`` before more than LARGE_BYTES. Raises before any byte is fetched when
    a server refuses, a licence is declined or the disk is too small."""
    items = list(plan.downloads)
    if not items:
        return []
    # 1. Licences first: nothing of a non-commercial model is fetched before the user said yes
    pending = licences.unaccepted(i.entry for i in items)
    if pending:
        if not accept(pending):
            names = ", ".join(f"{e.role} ({e.licence})" for e in pending)
            raise LicenceNotAccepted(f"The licences of {names} were not accepted, so nothing was downloaded.")
        licences.accept(pending)

    # 2. Ask every server (size, checksum, gated?) before downloading anything
    remotes: list[Remote] = []
    for n, item in enumerate(items, 1):
        progress(Progress("", 0, 0, n, len(items), 0.0, f"asking for {item.entry.filename}"))
        remotes.append(locate(item.entry, endpoint=endpoint, token=token))
        if cancel is not None:
            cancel.check()
    sizes = [r.size if r.size is not None else (i.entry.size_hint or 0) for i, r in zip(items, remotes, strict=True)]
    left = sum(max(0, s - _partial_bytes(i.dest)) for i, s in zip(items, sizes, strict=True))

    # 3. Room for all of it, and a yes for a large download
    room = free_bytes(plan.root)
    if left + SPACE_RESERVE > room:
        raise NotEnoughSpace(f"The downloads need {human_bytes(left)} and {plan.root} has {human_bytes(room)} "
                             "free; make room or choose another models folder. Nothing was downloaded.")
    if left > LARGE_BYTES and not confirm(left):
        raise Cancelled(f"Not downloaded: {human_bytes(left)} was not confirmed.")

    # 4. One file after another; each one checked and published atomically
    total = max(1, sum(sizes))
    done_before = 0
    fetched: list[Fetched] = []
    for n, (item, remote, size) in enumerate(zip(items, remotes, sizes, strict=True), 1):
        fetched.append(_one(item, remote, n, len(items), done_before, total, progress, cancel, endpoint, token))
        done_before += size
    progress(Progress("", 0, 0, len(items), len(items), 1.0, "done"))
    return fetched


def _one(item: FetchItem, remote: Remote, n: int, count: int, done_before: int, total: int,
         progress: ProgressFn, cancel: CancelToken | None, endpoint: str | None,
         token: str | bool | None) -> Fetched:
    # one stage per file, named by its weights key; steps are MiB (tile/tiles stay 0, so the last MiB of
    # every file is reported, not only of the last one)
    role = item.role
    progress(Progress(role, 0, 0, 0, 0, done_before / total, f"{role}: started"))

    def on_bytes(have: int, size: int | None) -> None:
        mib_total = math.ceil((size or have) / 2**20)
        progress(Progress(role, min(mib_total, math.ceil(have / 2**20)), max(1, mib_total), 0, 0,
                          min(0.999, (done_before + have) / total),
                          f"{item.entry.filename} (file {n} of {count}): {human_bytes(have)} of "
                          f"{human_bytes(size) if size else '?'}"))

    path = download(remote, item.dest, progress=on_bytes, cancel=cancel,
                    relocate=lambda: locate(item.entry, endpoint=endpoint, token=token))
    checked = f"sha256 ({remote.checked_by})" if remote.sha256 else "size"
    size = path.stat().st_size
    progress(Progress(role, 0, 0, 0, 0, min(0.999, (done_before + size) / total),
                      f"{role}: {item.entry.filename} ({human_bytes(size)}, {checked} checked) -> {path}"))
    return Fetched(role, path, size, checked)


def _partial_bytes(dest: Path) -> int:
    part = partial_path(dest)
    return part.stat().st_size if part.exists() else 0
