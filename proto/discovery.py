"""How clients find the daemon: the runtime file it publishes, the environment, the address forms.

`dermis serve` writes ``{"address", "token_file", "pid", "version", "api_version"}`` (``runtime_record``)
to ``default_runtime_file()`` and the token next to it; clients read both with ``read_runtime_file``
unless ``$DERMIS_ADDRESS`` / ``$DERMIS_TOKEN`` or explicit arguments say otherwise. The daemon and
every client use these functions, so the place and the format are defined once.

Standard library only and Python 3.10 syntax (the editors' Pythons import it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .client_types import ClientError, DaemonUnavailable

ADDRESS_ENV = "DERMIS_ADDRESS"
TOKEN_ENV = "DERMIS_TOKEN"
API_VERSION = 1


def default_runtime_file() -> Path:
    """Where `dermis serve` writes its runtime file (per user: state folder on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        state = os.environ.get("XDG_STATE_HOME", "")
        base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "dermis" / "daemon.json"


def runtime_record(address: str, token_file: Path, pid: int, version: str) -> dict[str, Any]:
    """What the runtime file holds (the daemon writes it as JSON, user-only)."""
    return {"address": address, "token_file": str(token_file), "pid": pid, "version": version,
            "api_version": API_VERSION}


def read_runtime_file(path: Path | None = None) -> dict[str, Any] | None:
    """The running daemon's runtime file, or None when there is none (or it is unreadable)."""
    path = path or default_runtime_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def normalize_address(address: str) -> str:
    """'unix:/p', 'unix:///p', '/p' (a socket path), '127.0.0.1:PORT', 'localhost:PORT' -> gRPC target."""
    address = address.strip()
    if address.startswith("unix:"):
        return address
    if address.startswith("/") or (os.sep != "/" and address.startswith(os.sep)):
        return "unix:" + address
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}", address):
        raise ClientError(
            f"'{address}' is not a daemon address; use unix:/path/to/socket or 127.0.0.1:PORT.",
            "invalid_argument",
        )
    return address


def pid_gone(pid: Any) -> bool:
    """True when the daemon that wrote the runtime file is certainly not running (POSIX only)."""
    if os.name != "posix" or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def find_daemon(address: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """(gRPC target, token or None): the arguments, else the environment, else the runtime file.

    Raises DaemonUnavailable when nothing says where a daemon is, or what it says is plainly stale
    (the process is gone, the socket does not exist)."""
    runtime_path = default_runtime_file()
    runtime = read_runtime_file(runtime_path)
    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        if runtime is None or not runtime.get("address"):
            raise DaemonUnavailable(
                f"No Dermis daemon is running (no {runtime_path}). Start it with `dermis serve`, "
                f"or give its address (${ADDRESS_ENV}).")
        if pid_gone(runtime.get("pid")):
            raise DaemonUnavailable(
                f"The Dermis daemon that wrote {runtime_path} (pid {runtime.get('pid')}) is no longer "
                "running. Start it with `dermis serve`.")
        address = str(runtime["address"])
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        token_file = Path(runtime["token_file"]) if runtime and runtime.get("token_file") \
            else runtime_path.with_name("token")
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            token = None
    target = normalize_address(address)
    if target.startswith("unix:"):
        path = target[len("unix:"):]
        path = path[2:] if path.startswith("//") else path
        if not os.path.exists(path):  # nothing to wait for: no daemon has bound it
            raise DaemonUnavailable(f"No Dermis daemon is listening at {target} (there is no socket "
                                    "there). Start it with `dermis serve`.")
    return target, token
