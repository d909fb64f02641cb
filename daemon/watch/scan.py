"""Which files in a watch folder are complete inputs: name filter, stability, decode gate.

File-system events only say "look here soon" (they fire at write start, many times during a copy, and
get lost or coalesced), so this module decides from the folder listing alone; the watcher calls
``scan`` on every event hint and on a periodic full rescan. A file counts once

1. its name is an image name and not a temp/hidden/partial file or one of our own outputs,
2. its size and mtime (and its sidecar's, if any) have not changed for ``stable_s`` seconds, and
3. it decodes completely (``pipeline.images.load``), checked by ``verify`` just before the claim, one
   file at a time: a thousand large TIFFs dropped at once are not all decoded before the first runs.

A stable file that does not decode may still be written by a slow writer that paused, so it gets
``give_up_s`` more seconds of being unchanged before it is declared broken. Unsupported or oversized
images are broken at once: more bytes cannot fix a header.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import CorruptImage, DermisError, InvalidParameter, images

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
FOLDER_SETTINGS = "dermis.toml"
SIDECAR_SUFFIX = ".dermis.toml"
# What writers use while a file is incomplete, and what desktops scatter around (daemon.md §3.2).
_TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", "~")
_JUNK_NAMES = {"thumbs.db", "desktop.ini"}
# Our own results (a.dermis.png, a.dermis-2.png): never inputs, even when the output folder is the
# watched one.
_OUTPUT_RE = re.compile(r".*\.dermis(-\d+)?\.[A-Za-z0-9]+")


def is_input_name(name: str) -> bool:
    """True for a name the watcher may take as an input image."""
    low = name.lower()
    if name.startswith((".", "~$")) or low in _JUNK_NAMES:
        return False
    if low.endswith(_TEMP_SUFFIXES) or _OUTPUT_RE.fullmatch(name):
        return False
    return Path(low).suffix in IMAGE_EXTS


def sidecar_names(name: str) -> tuple[str, str]:
    """Per-file settings for ``a.png``: ``a.png.dermis.toml`` (exact) or ``a.dermis.toml``."""
    return name + SIDECAR_SUFFIX, Path(name).stem + SIDECAR_SUFFIX


def find_sidecar(folder: Path, name: str) -> Path | None:
    for cand in sidecar_names(name):
        if (folder / cand).is_file():
            return folder / cand
    return None


@dataclass
class Broken:
    path: Path
    error: DermisError


@dataclass
class ScanResult:
    ready: list[Path] = field(default_factory=list)  # stable inputs, oldest first (``verify`` next)
    broken: list[Broken] = field(default_factory=list)  # complete but never going to decode
    waiting: int = 0  # inputs still being written or settling

    @property
    def pending(self) -> int:
        return len(self.ready) + len(self.broken) + self.waiting


@dataclass
class _Seen:
    signature: tuple  # (size, mtime_ns, sidecar size, sidecar mtime_ns)
    since: float  # monotonic time the signature was first seen
    mtime: float
    checked: bool = False  # decoded for this signature
    held: bool = False  # could not be claimed (permissions): ignored until it changes
    error: DermisError | None = None  # what the decode said, when it failed


class Scanner:
    """Remembers what it saw between scans; one per watched folder, used from one thread."""

    def __init__(self, folder: Path, *, stable_s: float = 2.0, give_up_s: float = 30.0,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS) -> None:
        self.folder = folder
        self.stable_s = stable_s
        self.give_up_s = give_up_s
        self.max_pixels = max_pixels
        self._seen: dict[str, _Seen] = {}

    def scan(self, now: float | None = None) -> ScanResult:
        now = time.monotonic() if now is None else now
        result = ScanResult()
        present: set[str] = set()
        ready: list[tuple[float, str]] = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return result
        for entry in entries:
            if not is_input_name(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue  # folders (done/, failed/) and links are never inputs
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            present.add(entry.name)
            sig = (st.st_size, st.st_mtime_ns, *self._sidecar_sig(entry.name))
            seen = self._seen.get(entry.name)
            if seen is None or seen.signature != sig:
                seen = self._seen[entry.name] = _Seen(sig, now, st.st_mtime)
            verdict = "held" if seen.held else self._judge(entry.name, seen, now)
            if verdict == "held":
                continue
            if verdict == "ready":
                ready.append((seen.mtime, entry.name))
            elif verdict == "broken":
                assert seen.error is not None, "broken means the decode said why"
                result.broken.append(Broken(self.folder / entry.name, seen.error))
            else:
                result.waiting += 1
        for gone in set(self._seen) - present:
            del self._seen[gone]
        result.ready = [self.folder / n for _, n in sorted(ready)]
        return result

    def verify(self, path: Path) -> tuple[str, DermisError | None]:
        """Just before claiming a ready file: ("ready", None), ("broken", error) or ("wait", None).

        The file must still have the signature it was judged stable with, and decode completely."""
        seen = self._seen.get(path.name)
        try:
            st = path.stat()
        except FileNotFoundError:
            return "wait", None
        if seen is None or seen.signature != (st.st_size, st.st_mtime_ns, *self._sidecar_sig(path.name)):
            return "wait", None  # changed since the scan: the next scan starts its clock again
        if not seen.checked:
            seen.checked = True
            try:
                images.load(path, max_pixels=self.max_pixels)
            except InvalidParameter:
                return "wait", None  # vanished while reading
            except DermisError as e:
                seen.error = e
        if seen.error is None:
            return "ready", None
        if not isinstance(seen.error, CorruptImage):
            return "broken", seen.error
        return "wait", None  # truncated: the scans give it give_up_s to change

    def hold(self, path: Path) -> None:
        """Leave this file alone until its size, time stamp or sidecar change."""
        seen = self._seen.get(path.name)
        if seen is not None:
            seen.held = True

    def forget(self, path: Path) -> None:
        self._seen.pop(path.name, None)

    def next_due(self, now: float | None = None) -> float | None:
        """Seconds until a settling file should be looked at again (None: nothing is settling)."""
        now = time.monotonic() if now is None else now
        due = []
        for s in self._seen.values():
            if not s.checked:
                due.append(s.since + self.stable_s - now)
            elif s.error is not None and isinstance(s.error, CorruptImage):
                due.append(s.since + self.stable_s + self.give_up_s - now)
        return max(0.0, min(due)) if due else None

    def _judge(self, name: str, seen: _Seen, now: float) -> str:
        if now - seen.since < self.stable_s:
            return "waiting"
        if not seen.checked or seen.error is None:
            return "ready"  # stable; verify() decodes it when its turn comes
        if not isinstance(seen.error, CorruptImage):
            return "broken"  # unsupported or too large: decided by the header, more bytes won't help
        # Truncated/garbled: maybe a writer that paused longer than stable_s. Give it time to change.
        return "broken" if now - seen.since >= self.stable_s + self.give_up_s else "waiting"

    def _sidecar_sig(self, name: str) -> tuple:
        # A sidecar written just after its image must be complete too before the pair is taken.
        for cand in sidecar_names(name):
            try:
                st = os.stat(self.folder / cand)
            except (FileNotFoundError, NotADirectoryError):
                continue
            return (st.st_size, st.st_mtime_ns)
        return (None, None)
