"""Helpers for the real-Krita tests: a throw-away Krita profile, the installed plugin, the daemon.

Nothing here stands in for Krita or the daemon: Krita is Debian's (tools/setup.d/10-krita.sh), the
plugin is installed by `dermis install-plugin krita` with real grpcio/protobuf wheels for Krita's
Python, and the daemon is `python -m daemon serve` as a separate process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ._daemon_helpers import ServeProcess
from ._xvfb import free_display

REPO = Path(__file__).resolve().parent.parent
KRITA_TESTS = Path(__file__).resolve().parent / "krita"
WHEEL_CACHE = REPO / ".cache" / "krita-wheels"  # downloaded once, reused by later runs (gitignored)


def require_krita() -> None:
    """Editor tests fail (never skip) when Krita is not installed, saying how to install it."""
    missing = [b for b in ("krita", "kritarunner", "xvfb-run") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the Krita tests need Debian's krita and xvfb; "
                    "run `make editors` (tools/setup.d/10-krita.sh).", pytrace=False)


def profile_env(root: Path, state_home: Path) -> dict[str, str]:
    """Environment of a Krita process with its own home (settings, resources) and the daemon's state dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DERMIS_", "PYTHON"))}
    home = root / "home"
    runtime = root / "xdg-runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(runtime),
               XDG_STATE_HOME=str(state_home),  # where the client finds the daemon's runtime file
               LANG="C.UTF-8")
    (home / ".config").mkdir(parents=True, exist_ok=True)
    return env


def krita_python_version() -> str:
    from daemon.install.krita import detect_python_version

    return detect_python_version()[0]


def wheels_for(python_version: str) -> Path:
    """grpcio + protobuf wheels for Krita's Python, pinned like this venv (downloaded once)."""
    from daemon.install import vendor

    d = WHEEL_CACHE / f"py{python_version}"
    if len(list(d.glob("*.whl"))) < len(vendor.PACKAGES):
        vendor.download_wheels(d, python_version)
    return d


def install_plugin(pykrita: Path | None, *extra: str) -> None:
    """`dermis install-plugin krita` into ``pykrita`` (None: Krita's default folder)."""
    from daemon.cli import main

    target = ["--target", str(pykrita)] if pykrita is not None else []
    assert main(["install-plugin", "krita", *target, *extra]) == 0


def serve(root: Path, presets: dict[str, str] | None = None) -> ServeProcess:
    """`python -m daemon serve` in its own folders, found by clients through its runtime file: on the
    default listen address (a Unix socket in XDG_RUNTIME_DIR, as for a user on Linux)."""
    config = root / "config"
    for name, text in (presets or {}).items():
        p = config / "dermis" / "presets" / f"{name}.toml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DERMIS_"))}
    runtime = root / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(config), XDG_DATA_HOME=str(root / "data"),
               XDG_CACHE_HOME=str(root / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return ServeProcess(root / "state", "--grace", "2", env=env, log=root / "daemon.log", timeout=60)


def bgra_bytes(rgba: np.ndarray) -> bytes:
    """RGBA pixels as Krita stores them: BGRA, little-endian for 16 bits."""
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).astype("<u2" if rgba.dtype == np.uint16 else "u1").tobytes()


def ellipse_mask(w: int, h: int) -> np.ndarray:
    """A soft elliptic selection (uint8), opaque in the middle and feathered to the edge."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx - w / 2 + 0.5) / (w / 2)) ** 2 + ((yy - h / 2 + 0.5) / (h / 2)) ** 2
    return (np.clip((1.15 - r) / 0.3, 0, 1) * 255).astype(np.uint8)


def read_raw(out: Path, name: str, shape: tuple[int, ...], bits: int) -> np.ndarray:
    dtype = "<u2" if bits == 16 else "u1"
    return np.frombuffer((out / name).read_bytes(), dtype=dtype).reshape(shape)


def run_kritarunner(env: dict[str, str], pythonpath: list[Path], module: str, function: str, *args: str,
                    timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(env, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath), QT_QPA_PLATFORM="offscreen")
    return subprocess.run(["kritarunner", "-s", module, "-f", function, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_krita_gui(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["xvfb-run", "-n", str(free_display()), "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"],
                          env=env, capture_output=True, text=True, timeout=timeout)
