"""Shared set-up for the SUPIR tests: the parity fixture folder and the tiny model's configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def fixture_dir() -> Path:
    return Path(os.environ.get("DERMIS_SUPIR_FIXTURES") or REPO.parent / "shared" / "fixtures" / "supir")


def require_fixtures(*names: str) -> Path:
    d = fixture_dir()
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        pytest.skip(f"SUPIR parity fixtures not found ({', '.join(missing)} in {d}); "
                    "set DERMIS_SUPIR_FIXTURES to a fixture folder")
    return d


def tiny_config(d: Path) -> tuple[int, int]:
    """(attention head width, size-embedding width) of the fixture's tiny model: the two numbers a
    state dict cannot tell (everything else is read from the checkpoint shapes)."""
    cfg = json.loads((d / "tiny_config.json").read_text())["reference"]
    head = cfg["network_config (LightGLVUNet)"]["params"]["num_head_channels"]
    layout = cfg["vector_y_layout"]
    add = next(v for k, v in layout.items() if k.startswith("add_time_dim"))
    return int(head), int(add)


def load_fixture_models(d: Path):
    """The fixture's tiny SDXL + SUPIR through Dermis's real loaders, float32, no text encoders."""
    import torch

    from pipeline.models.supir.pipeline import load_models

    head, add = tiny_config(d)
    return load_models(d / "tiny_sdxl.safetensors", d / "tiny_supir.safetensors", torch.float32, torch.float32,
                       head_dim=head, add_time_dim=add, text_encoders=False)


def parity_fixtures(stem: str):
    """The module fixtures of a SUPIR parity file: ``fx`` (the fixture folder, with ``<stem>.safetensors``
    and ``<stem>.md``), ``golden`` (its tensors) and ``models`` (the tiny models through the real loaders).
    Use as ``fx, golden, models = parity_fixtures("golden")``."""

    @pytest.fixture(scope="module")
    def fx():
        return require_fixtures("tiny_sdxl.safetensors", "tiny_supir.safetensors", f"{stem}.safetensors",
                                f"{stem}.md", "tiny_config.json")

    @pytest.fixture(scope="module")
    def golden(fx):
        from safetensors.torch import load_file

        return load_file(str(fx / f"{stem}.safetensors"))

    @pytest.fixture(scope="module")
    def models(fx):
        return load_fixture_models(fx)

    return fx, golden, models


def keys(golden, prefix: str) -> list[str]:
    """The golden tensor names under ``prefix``, sorted."""
    return sorted(k for k in golden if k.startswith(prefix))
