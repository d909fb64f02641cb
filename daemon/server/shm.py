"""The daemon's side of shared-memory transfers (proto/shm.py has the protocol and the file checks).

``SharedMemoryDir.create()`` makes a fresh private folder on a memory file system: mkdtemp (mode
0700, an unguessable name, created atomically, so nobody can have prepared it) under
$XDG_RUNTIME_DIR, else /dev/shm. Uploads are taken from it by id only, results are published into
it, files nobody collected are swept after ``MAX_AGE_S``, and the folder goes when the daemon stops.
Folders of daemons that were killed (their pid is in the name) are removed at the next start.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import stat
import sys
import tempfile
import time
import weakref
import zlib
from pathlib import Path
from typing import Any

from proto import shm
from proto.discovery import pid_gone

from ..errors import BadUpload, SharedMemoryUnavailable
from .upload import PixelLayout

log = logging.getLogger("dermis.daemon")

MAX_AGE_S = 300.0  # s a file may wait in the folder (a client that died before collecting it)


def memory_roots() -> list[Path]:
    """Where a memory file system for this user is: $XDG_RUNTIME_DIR (per user), /dev/shm."""
    if sys.platform != "linux":
        return []  # macOS has no /dev/shm and $TMPDIR is a disk; Windows has no such files
    roots = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime):
        roots.append(Path(runtime))
    if os.path.isdir("/dev/shm"):
        roots.append(Path("/dev/shm"))
    return roots


class SharedMemoryDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_sweep = 0.0

    @classmethod
    def create(cls) -> SharedMemoryDir | None:
        """A new private folder, or None where there is no memory file system (streaming only)."""
        prefix = f"dermis-{os.getuid()}-"
        for root in memory_roots():
            _remove_orphans(root, prefix)
            try:
                path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
            except OSError as e:
                log.info("no shared-memory transfers in %s: %s", root, e)
                continue
            if shm.usable_dir(str(path)) is not None:
                return cls(path)
            shutil.rmtree(path, ignore_errors=True)
        return None

    def take_upload(self, header: Any, layout: PixelLayout) -> tuple[memoryview, memoryview | None]:
        """The image (then mask) bytes of a shared-memory upload, mapped read-only; the file is removed
        at once (the mapping stays valid). Checks as for streamed uploads: size and CRC-32."""
        self.sweep()
        mask_bytes = layout.width * layout.height if header.has_mask else 0
        size = layout.nbytes + mask_bytes
        try:
            fd = shm.open_in(self.path, header.shared_memory_id)
        except shm.SharedMemoryError as e:
            raise SharedMemoryUnavailable(f"{e} Send the pixels as chunks instead.") from None
        try:
            shm.check_file(fd, size)
            # MAP_POPULATE maps every page at once: faster than faulting them in one by one
            mapped = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               prot=mmap.PROT_READ)
        except (shm.SharedMemoryError, OSError, ValueError) as e:
            raise SharedMemoryUnavailable(f"{e} Send the pixels as chunks instead.") from None
        finally:
            os.close(fd)
            shm.remove(self.path, header.shared_memory_id)
        view = memoryview(mapped)
        image, mask = view[:layout.nbytes], (view[layout.nbytes:] if mask_bytes else None)
        for name, blob, crc in (("image", image, header.image_crc32), ("mask", mask, header.mask_crc32)):
            if blob is not None and zlib.crc32(blob) & 0xFFFFFFFF != crc:
                raise BadUpload(f"the {name} checksum does not match: the shared-memory file changed or "
                                "was written wrongly.")
        return image, mask

    def result_file(self, size: int) -> ResultFile | None:
        """A new file of ``size`` bytes in the folder for a result (None when it cannot be made: the
        result is then kept in ordinary memory)."""
        try:
            return ResultFile(self.path, size)
        except OSError:  # the memory file system is full: the result stays in ordinary memory
            return None

    def publish(self, pixels: Any, file: ResultFile | None = None) -> str:
        """Give a result to a client through the folder (it reads and removes the file); its id. A
        result that is already in a ResultFile only gets a name, without a copy."""
        self.sweep()
        if file is not None:
            try:
                return file.link(self.path)
            except OSError as e:
                log.info("result file not linked (%s): copied instead", e)
        return shm.write_new(self.path, [pixels])

    def sweep(self, max_age: float = MAX_AGE_S) -> None:
        """Remove files nobody collected (at most every few seconds)."""
        now = time.time()
        if now - self._last_sweep < 5.0:
            return
        self._last_sweep = now
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for entry in entries:
            if not shm.SHM_ID.fullmatch(entry.name):  # results the daemon still holds keep their file
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                    os.unlink(entry.path)
            except OSError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class ResultFile:
    """A result's pixels in a file of the folder under a name only the daemon uses ("result-…", which
    no client id matches): the executor writes them into its mapping, Watch streams from the mapping,
    and a client that wants the file gets another name for it (a hard link), so the daemon never
    copies the pixels. The daemon's name goes when it drops the result; the client removes its own."""

    def __init__(self, folder: Path, size: int) -> None:
        path = folder / f"result-{shm.new_id()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        weakref.finalize(self, _drop, fd, path)
        self.path = path
        os.ftruncate(fd, size)
        self.map = mmap.mmap(fd, size)

    def link(self, folder: Path) -> str:
        shm_id = shm.new_id()
        os.link(self.path, folder / shm_id)
        return shm_id


def _drop(fd: int, path: Path) -> None:
    os.close(fd)
    path.unlink(missing_ok=True)


def _remove_orphans(root: Path, prefix: str) -> None:
    """Folders of this user's daemons that no longer run ("dermis-<uid>-<pid>-…")."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and pid.isdigit() and pid_gone(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
