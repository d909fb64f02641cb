"""File moves for the watch folder that never overwrite and survive a crash at any instruction.

Everything here is plain file-system work (no pixels): picking a free name with a counter, moving a file
into place without replacing what is there, writing a result through a hidden temp file, and the lock
that keeps two watchers off one folder. Renames are atomic only within one volume, which is why the
work, done and failed folders live inside the watched folder.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Set
from pathlib import Path

from pipeline.files import fsync_dir, link_new, temp_files


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def counter_name(name: str, n: int, *, suffix_len: int | None = None) -> str:
    """``a.dermis.png`` -> ``a.dermis-2.png`` (n >= 2); n == 1 is the name itself.

    ``suffix_len`` says how much of the name is the extension (default: the last suffix).
    """
    if n == 1:
        return name
    cut = len(name) - (suffix_len if suffix_len is not None else len(Path(name).suffix))
    return f"{name[:cut]}-{n}{name[cut:]}"


def free_path(folder: Path, name: str, taken: Set[str] = frozenset()) -> Path:
    """The first of name, name-2, name-3 … that does not exist in ``folder`` and is not in ``taken``."""
    n = 1
    while True:
        cand = counter_name(name, n)
        if cand not in taken and not os.path.lexists(folder / cand):
            return folder / cand
        n += 1


def move_new(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` without replacing an existing ``dst`` (FileExistsError then).

    Link + unlink: a crash between the two leaves both names on one inode, which ``finish_move`` tidies.
    """
    link_new(src, dst)
    if os.path.lexists(src):
        os.unlink(src)
    fsync_dir(dst.parent)


def finish_move(src: Path, dst: Path) -> bool:
    """After a crash: True when the move ``src`` -> ``dst`` has happened (tidying a half-done one)."""
    if not os.path.lexists(dst):
        return False
    if os.path.lexists(src):
        if not os.path.samefile(src, dst):
            return False  # dst is someone else's file: the caller picks another name
        os.unlink(src)
    return True


def remove_temps(path: Path) -> int:
    """Delete the temp files ``write_new`` may have left for ``path`` when the process died."""
    leftovers = temp_files(path)
    for tmp in leftovers:
        tmp.unlink()
    return len(leftovers)


class FolderLock:
    """An exclusive lock on a watch folder for this process's lifetime (released by the OS on kill -9).

    Two watchers on one folder would each take the other's running jobs for crashed ones and redo them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by whoever holds (or last held) the lock."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def is_held_elsewhere(self) -> bool:
        if self._fd is not None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            if _try_lock(fd):
                _unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


if sys.platform != "win32":
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

else:
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
