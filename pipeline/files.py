"""Writing files so that readers see nothing or everything: the one place Dermis does it.

Every write goes to a hidden ``.<name>.<random>.part`` temp file in the destination folder (any
watcher, ours included, ignores it), is fsynced, gets its final permissions, and is then published by
an atomic rename (``write_atomic``: replaces) or a hard link (``write_new``: never replaces). The temp
file is removed on any failure, so an interrupted write leaves the old file or nothing.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

# Hard links give "create this name only if it is free" atomically; a few file systems (FAT, some SMB
# servers) refuse them, and there we fall back to check-then-rename, which is racy only against
# someone writing into the same folder at the same instant.
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` as ``path`` (replacing it) through a temp file + fsync + rename."""
    path = Path(path)
    _publish(path, data, mode, lambda tmp: os.replace(tmp, path))
    return path


def write_new(path: Path, data: bytes, *, mode: int = 0o644,
              before_publish: Callable[[], None] | None = None) -> None:
    """Write ``data`` as ``path``, never replacing a file: FileExistsError when ``path`` exists.
    ``before_publish`` is a test hook called between the fsync and the link."""

    def publish(tmp: Path) -> None:
        if before_publish is not None:
            before_publish()
        link_new(tmp, path)
        fsync_dir(path.parent)

    _publish(path, data, mode, publish)


def temp_files(path: Path) -> list[Path]:
    """The temp files an interrupted write of ``path`` may have left (after a crash)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[^/]*\.part")
    if not path.parent.is_dir():
        return []
    return [Path(e.path) for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]


def fsync_dir(folder: Path) -> None:
    """Make a rename or create in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_new(src: Path, dst: Path) -> None:
    """Give ``src``'s content the name ``dst``; FileExistsError if ``dst`` exists (never replaced)."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "file exists", str(dst))
    os.rename(src, dst)


def _publish(path: Path, data: bytes, mode: int, publish: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)  # created 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        publish(tmp)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
