"""Pixels through shared memory, for a client on the daemon's own machine: no socket copies.

The daemon keeps a private folder on a memory file system (``ServerInfo.shared_memory_dir``: mode
0700, owned by the daemon's user, under $XDG_RUNTIME_DIR or /dev/shm). A client of the same user
writes an upload into a new file there (0600, a random 32-hex-digit name, created exclusively) and
sends only the header with that name (``JobHeader.shared_memory_id``); the daemon opens the name
inside ITS folder only, checks that it is a regular file of its own user, 0600, of exactly the
announced size, maps it read-only and removes it. Results come back the same way when the client asks
(``WatchRequest.result_in_shared_memory``). Names are opaque ids, never paths: anything that is not 32
hex digits is refused. Everything else (another machine, Windows, a folder that is not right) streams.

Standard library only and Python 3.10 syntax: the plug-ins run this in the editors' Pythons.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

SHM_ID = re.compile(r"[0-9a-f]{32}")
MIN_BYTES = 1 << 20  # smaller images stream: one chunk costs less than a file
_WRITE_STEP = 256 << 20  # os.write moves at most ~2 GiB per call; stay far below
_READ_STEP = 1 << 30  # the same for os.read (one call up to 1 GiB: a larger result joins its parts)


class SharedMemoryError(OSError):
    """The folder or a file in it is not what it must be (the caller falls back to streaming)."""


def new_id() -> str:
    return secrets.token_hex(16)


def check_id(shm_id: str) -> str:
    if not SHM_ID.fullmatch(shm_id or ""):
        raise SharedMemoryError(f"{shm_id[:40]!r} is not a shared-memory id (32 hex digits).")
    return shm_id


def usable_dir(path: str) -> Path | None:
    """The daemon's folder if this process may use it: a real folder (no symlink) of this user with
    no access for anyone else; None otherwise (another machine, another user, no POSIX)."""
    if not path or os.name != "posix":
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return Path(path)


def check_file(fd: int, size: int) -> None:
    """An open shared-memory file must be a regular file of this user, 0600, of exactly ``size`` bytes."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise SharedMemoryError("the shared-memory file is not a regular file.")
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o600:
        raise SharedMemoryError("the shared-memory file must belong to the daemon's user with mode 0600.")
    if st.st_size != size:
        raise SharedMemoryError(f"the shared-memory file has {st.st_size:,} bytes, not the {size:,} announced.")


def open_in(folder: Path, shm_id: str) -> int:
    """Open ``folder/<id>`` for reading, refusing symlinks; the caller closes the descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(folder / check_id(shm_id), flags)
    except OSError as e:
        raise SharedMemoryError(f"cannot open shared-memory file {shm_id}: {e.strerror}") from None


def write_new(folder: Path, blobs: Sequence[bytes | bytearray | memoryview]) -> str:
    """Write ``blobs`` one after the other into a new private file in ``folder``; its id."""
    shm_id = new_id()
    path = folder / shm_id
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask did
        for blob in blobs:
            view = memoryview(blob).cast("B")
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:done + _WRITE_STEP])
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return shm_id


def read_and_remove(folder: Path, shm_id: str, size: int) -> bytes:
    """The ``size`` bytes of ``folder/<id>`` (checked as the daemon checks uploads); the file is removed."""
    fd = open_in(folder, shm_id)
    try:
        check_file(fd, size)
        if size == 0:
            return b""
        # os.read copies in the kernel with Python's lock released: a copy out of a mapping
        # (``mapped[:]``) holds it for the whole copy, 0.1-0.2 s at 128 MiB, and an editor's UI
        # thread (Krita's plugin waits on a worker thread) stands still that long
        parts = []
        done = 0
        while done < size:
            part = os.read(fd, min(size - done, _READ_STEP))
            if not part:
                raise SharedMemoryError(f"shared-memory file {shm_id} ended after {done} of {size} bytes")
            parts.append(part)
            done += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)
        remove(folder, shm_id)


def remove(folder: Path, shm_id: str) -> None:
    try:
        (folder / check_id(shm_id)).unlink()
    except (OSError, SharedMemoryError):
        pass
