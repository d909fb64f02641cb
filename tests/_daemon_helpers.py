"""Helpers for the daemon tests: the test presets, an in-process daemon (the ``daemon`` fixture in
conftest.py uses ``start``), `dermis serve` as a real process (``ServeProcess``), raw images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.server.start import ServerConfig, start_server
from proto.client import Client, JobRequest
from proto.discovery import read_runtime_file

from .conftest import REPO, wait_for

TOKEN = "test-token-" + "x" * 20

# identity: a resample stage at scale 1 returns its input unchanged, bit for bit
IDENTITY_PRESET = """
name = "identity"
label = "identity"
description = "test: resample at scale 1 (returns the input)"
scale = 1.0

[[stage]]
id = "resample"
kind = "resample"
"""

# a real multi-step job: the tiny Compact model over 32 px tiles, one tile per step (format name and model)
TILES_PRESET = """
name = "{name}"
label = "{name}"
description = "test: tiny Compact model over 32 px tiles, one tile per step"
scale = 1.0

[[stage]]
id = "upscale"
kind = "upscale_model"
model = "{model}"
tile = 32
overlap = 8
batch = 1
"""

# needs a weight that is nowhere in the isolated test folders
NEEDS_WEIGHTS_PRESET = """
name = "needs-weights"
scale = 1.0

[[stage]]
id = "skin_detail"
kind = "upscale_model"
model = "skin_detail"
"""


def user_presets_dir() -> Path:
    """Where pipeline.presets() looks for user presets (conftest points XDG_CONFIG_HOME at a temp dir)."""
    return Path(os.environ["XDG_CONFIG_HOME"]) / "dermis" / "presets"


def write_test_presets(tiny_models: Path) -> dict[str, Path]:
    folder = user_presets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_models / "upscale_models" / "4x-tiny-Compact.pth"
    files = {"identity": IDENTITY_PRESET, "tiles": TILES_PRESET.format(name="tiles", model=model),
             "needs-weights": NEEDS_WEIGHTS_PRESET}
    written = {}
    for name, text in files.items():
        path = folder / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        written[name] = path
    return written


def start(short_tmp: Path, **kw):
    kw.setdefault("listen", f"unix:{short_tmp / 'd.sock'}")
    kw.setdefault("token", TOKEN)
    kw.setdefault("device", "cpu")
    return start_server(ServerConfig(**kw))[1]


def client(d) -> Client:
    return Client(d.address, TOKEN, timeout=30.0)


def raw_image(h: int, w: int, channels: int = 3, depth: int = 8, seed: int = 0) -> np.ndarray:
    hi = 256 if depth == 8 else 65536
    dtype = np.uint8 if depth == 8 else np.uint16
    return np.random.default_rng(seed).integers(0, hi, (h, w, channels), dtype=dtype)


def request(arr: np.ndarray, **kw) -> JobRequest:
    h, w, c = arr.shape
    depth = 8 if arr.dtype == np.uint8 else 16
    wire = arr if depth == 8 else arr.astype("<u2")
    return JobRequest(pixels=np.ascontiguousarray(wire).tobytes(), width=w, height=h, channels=c,
                      bit_depth=depth, **kw)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc; what the daemon holds, not what it once touched)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def result_array(res) -> np.ndarray:
    dtype = np.uint8 if res.bit_depth == 8 else np.dtype("<u2")
    return np.frombuffer(res.pixels, dtype=dtype).reshape(res.height, res.width, res.channels)


class ServeProcess:
    """`python -m daemon serve ARGS` as a real process with its own state folder (runtime file, token,
    default socket), ready once it has published its runtime file. Its output goes to ``log`` (a file:
    a pipe could fill up and block the daemon)."""

    def __init__(self, state_home: Path, *args: str, env: dict[str, str] | None = None,
                 log: Path | None = None, timeout: float = 120.0) -> None:
        self.state = state_home
        self.runtime_file = state_home / "dermis" / "daemon.json"
        env = {k: v for k, v in (os.environ if env is None else env).items()
               if k not in ("DERMIS_ADDRESS", "DERMIS_TOKEN")}
        env.update(XDG_STATE_HOME=str(state_home), DERMIS_DEVICE=env.get("DERMIS_DEVICE", "cpu"))
        state_home.mkdir(parents=True, exist_ok=True)
        self.log = log or state_home / "daemon.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "serve", *args], cwd=REPO, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        try:
            self.info: dict[str, Any] = wait_for(self._published, timeout, f"dermis serve to write {self.runtime_file}")
        except AssertionError as e:
            self.stop()
            pytest.fail(f"{e}:\n{self.tail()}", pytrace=False)
        self.address: str = self.info["address"]
        self.token = Path(self.info["token_file"]).read_text().strip()

    def _published(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"dermis serve exited with {self.proc.returncode}:\n{self.tail()}", pytrace=False)
        info = read_runtime_file(self.runtime_file)
        return info if info is not None and info.get("pid") == self.proc.pid else None

    def client(self, **kw: Any) -> Client:
        """A client of this daemon (``admin=True``: one that sees every client's jobs, as `dermis status`)."""
        return Client(self.address, self.token, **kw)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Ask it to stop (SIGTERM: the graceful shutdown), kill it if it takes too long; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
