"""Fixtures and helpers shared by the daemon tests: an in-process daemon on a temporary Unix socket,
test presets written where user presets live, raw images."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from daemon.server.start import ServerConfig, start_server
from proto.client import Client, JobRequest

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

# a real multi-step job: the tiny Compact model over 32 px tiles, one tile per step
TILES_PRESET = """
name = "tiles"
label = "tiles"
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


@pytest.fixture
def test_presets(tiny_models: Path) -> dict[str, Path]:
    folder = user_presets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_models / "upscale_models" / "4x-tiny-Compact.pth"
    files = {"identity": IDENTITY_PRESET, "tiles": TILES_PRESET.format(model=model),
             "needs-weights": NEEDS_WEIGHTS_PRESET}
    written = {}
    for name, text in files.items():
        path = folder / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        written[name] = path
    return written


@pytest.fixture
def short_tmp():
    """A short folder for Unix sockets (their paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(short_tmp: Path, **kw):
    kw.setdefault("listen", f"unix:{short_tmp / 'd.sock'}")
    kw.setdefault("token", TOKEN)
    kw.setdefault("device", "cpu")
    return start_server(ServerConfig(**kw))[1]


@pytest.fixture
def daemon(short_tmp, test_presets):
    d = start(short_tmp)
    yield d
    d.stop(grace=5.0)


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


def result_array(res) -> np.ndarray:
    dtype = np.uint8 if res.bit_depth == 8 else np.dtype("<u2")
    return np.frombuffer(res.pixels, dtype=dtype).reshape(res.height, res.width, res.channels)
