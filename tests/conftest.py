"""Shared test set-up: offline, isolated from the user's config, tiny models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

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


def pytest_terminal_summary(terminalreporter) -> None:
    """The largest relative error each parity family showed on this machine and kernel path."""
    from ._parity import WORST, kernel_path

    if WORST:
        terminalreporter.write_sep("-", f"parity: largest relative error per family ({kernel_path()})")
        for family, (rel, name) in sorted(WORST.items()):
            terminalreporter.write_line(f"{family:<16} {rel:.2e}  ({name})")


def rng_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, channels), dtype=np.float32)
