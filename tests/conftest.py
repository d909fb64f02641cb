"""Shared test set-up: offline, isolated from the user's config, tiny models built once per session,
the in-process daemon and its test presets, and the one bounded wait every test polls with.

Fixtures shared by several test modules live here (pytest finds them without an import); plain
helpers stay in ``tests/_<area>_helpers.py`` and are imported where used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("DERMIS_CONFIG", None)
os.environ.pop("DERMIS_COMFY_MODELS", None)
os.environ.setdefault("DERMIS_DEVICE", "cpu")

import torch  # noqa: E402

# DERMIS_TEST_THREADS=1 reruns the parity tests with another summation order (make test does)
torch.set_num_threads(int(os.environ.get("DERMIS_TEST_THREADS") or max(1, min(2, os.cpu_count() or 1))))

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared").resolve()
PORTRAIT = REPO / "examples" / "portrait_astronaut_512.png"
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never read or write the real user's config, models or state folders."""
    home = tmp_path_factory.getbasetemp() / "home"
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        monkeypatch.setenv(var, str(home / sub))


@pytest.fixture(scope="session")
def portrait_path() -> Path:
    return PORTRAIT


@pytest.fixture(scope="session")
def portrait():
    from pipeline import images

    return images.load(PORTRAIT)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A ComfyUI-style models/ folder of random-weight models in their real file formats."""
    from pipeline.models.tiny import make_tiny_models

    root = tmp_path_factory.mktemp("tiny_models")
    make_tiny_models(root)
    return root


@pytest.fixture
def test_presets(tiny_models: Path) -> dict[str, Path]:
    """The daemon tests' presets (identity, tiles, needs-weights), written where user presets live."""
    from ._daemon_helpers import write_test_presets

    return write_test_presets(tiny_models)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder for Unix sockets (their paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path, test_presets: dict[str, Path]) -> Iterator[Any]:
    """A daemon in this process (real gRPC server, queue and executor) on a temporary Unix socket."""
    from ._daemon_helpers import start

    d = start(short_tmp)
    yield d
    d.stop(grace=5.0)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A real Ray cluster on loopback for one cluster test module: a head and two worker nodes, each
    offering one unit of the custom resource ``dermis_worker`` (tests/_cluster_helpers.py)."""
    from ._cluster_helpers import LoopbackCluster

    c = LoopbackCluster(workers=2)
    yield c
    c.shutdown()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in, a catalogue of its files, the demo presets, and huggingface_hub pointed at it (online)."""
    import huggingface_hub.constants as hc

    from ._models_helpers import standin, write_catalogue, write_presets

    h = standin()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # licences accepted by this test only
    write_presets()
    monkeypatch.setenv("DERMIS_CATALOGUE", str(write_catalogue(tmp_path / "catalogue.toml", h)))
    monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)  # huggingface_hub read the conftest's value at import
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))  # no stored login unless a test writes one
    yield h
    h.close()


T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             poll: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy (returned), for at most ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def pytest_terminal_summary(terminalreporter) -> None:
    """The largest relative error each parity family showed on this machine and kernel path."""
    from ._parity import WORST, kernel_path

    if WORST:
        terminalreporter.write_sep("-", f"parity: largest relative error per family ({kernel_path()})")
        for family, (rel, name) in sorted(WORST.items()):
            terminalreporter.write_line(f"{family:<16} {rel:.2e}  ({name})")


def rng_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, channels), dtype=np.float32)
