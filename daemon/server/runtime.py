"""Where the running daemon listens and how clients find it: address parsing, the default socket,
the runtime file ``{"address", "token_file", "pid", ...}`` and a lock so two daemons never share one.

The runtime file's place, format and reader are the thin client's (proto/discovery.py: one definition
for both sides); the token file sits next to it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline import InvalidParameter
from proto.discovery import default_runtime_file, read_runtime_file, runtime_record

from .auth import write_private

DEFAULT_TCP = "127.0.0.1:50151"  # Windows (no Unix sockets in Python gRPC there)
_SUN_PATH_MAX = 107  # bytes a Unix socket path may have (108 with the NUL)


@dataclass(frozen=True)
class ListenAddress:
    target: str  # what grpc's add_insecure_port takes
    socket_path: Path | None  # for unix: addresses
    host: str  # "" for unix:
    port: int  # 0 = let the OS pick

    @property
    def loopback(self) -> bool:
        if self.socket_path is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def default_listen() -> str:
    if sys.platform == "win32":
        return DEFAULT_TCP
    return f"unix:{default_socket_path()}"


def default_socket_path() -> Path:
    """$XDG_RUNTIME_DIR/dermis/daemon.sock (a user-only tmpfs), else next to the runtime file; on
    macOS under $TMPDIR, which is per user and short enough for a socket path."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if sys.platform == "darwin":
        return Path(tempfile.gettempdir()) / f"dermis-{os.getuid()}" / "daemon.sock"
    if os.path.isabs(runtime_dir):
        return Path(runtime_dir) / "dermis" / "daemon.sock"
    return default_runtime_file().with_name("daemon.sock")


def parse_listen(text: str) -> ListenAddress:
    """'unix:/path', 'unix:///path', '/path', '127.0.0.1:PORT', '[::1]:PORT', 'localhost:PORT', 'HOST:PORT'."""
    text = text.strip()
    if text.startswith("unix:") or text.startswith("/"):
        raw = text[len("unix:"):] if text.startswith("unix:") else text
        if raw.startswith("//"):
            raw = raw[2:]
        path = Path(raw).expanduser().absolute()
        if len(str(path).encode()) > _SUN_PATH_MAX:
            raise InvalidParameter(f"the socket path {path} is longer than the {_SUN_PATH_MAX} bytes Unix "
                                   "sockets allow; pick a shorter --listen unix:/path.")
        if sys.platform == "win32":
            raise InvalidParameter("Unix sockets are not available to gRPC on Windows; use --listen 127.0.0.1:PORT.")
        return ListenAddress(f"unix:{path}", path, "", 0)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidParameter(f"--listen takes unix:/path/to/socket or HOST:PORT (e.g. 127.0.0.1:50151), "
                               f"not {text!r}.")
    return ListenAddress(f"{host}:{port}", None, host, int(port))


def client_address(listen: ListenAddress, bound_port: int) -> str:
    """The address clients should dial (the real port when the OS picked one)."""
    if listen.socket_path is not None:
        return listen.target
    host = listen.host
    if host in ("0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"  # reachable from everywhere means reachable from here too
    return f"{host}:{bound_port}"


def prepare_socket(path: Path) -> None:
    """Create the socket's folder (user-only) and remove a stale socket a crashed daemon left behind.

    Only call this while holding the DaemonLock: a live daemon's socket must never be unlinked."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_socket():
        path.unlink()
    elif path.exists():
        raise InvalidParameter(f"{path} exists and is not a socket; remove it or choose another --listen.")


class DaemonLock:
    """An exclusive lock next to the runtime file, held as long as the daemon runs (POSIX flock)."""

    def __init__(self, runtime_file: Path) -> None:
        self.path = runtime_file.with_name("daemon.lock")
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the daemon's life
        try:
            import fcntl
        except ImportError:  # Windows: the TCP port itself is exclusive (SO_REUSEPORT is off)
            self._fh = fh
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            other = read_runtime_file(self.path.with_name("daemon.json")) or {}
            raise InvalidParameter(
                f"another Dermis daemon is running (pid {other.get('pid', '?')}, {other.get('address', '?')}); "
                "stop it first (`kill -TERM <pid>`) or check it with `dermis status`.") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_runtime(runtime_file: Path, address: str, token_file: Path, version: str) -> None:
    data = runtime_record(address, token_file, os.getpid(), version)
    write_private(runtime_file, json.dumps(data, indent=2) + "\n")


def remove_runtime(runtime_file: Path) -> None:
    """Remove the runtime file only if it still describes this process."""
    data = read_runtime_file(runtime_file)
    if data is not None and data.get("pid") == os.getpid():
        runtime_file.unlink(missing_ok=True)

