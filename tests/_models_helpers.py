"""Helpers for the download tests: tiny files on the Hub stand-in, a catalogue naming them, a preset
that needs them, and the environment that points huggingface_hub at the stand-in (never the internet).

The catalogue is a real catalogue file (``DERMIS_CATALOGUE``) in the shipped format, with the same
roles as the shipped one, so everything between `dermis models get` and the bytes on disk is the code
users run; only the sources are the stand-in's.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ._daemon_helpers import user_presets_dir
from .hub_standin import HubStandIn

MiB = 1 << 20
# two files of the demo preset: a release download (non-commercial, sha256 from the catalogue) and an
# LFS file on the Hub (sha256 from the Hub's X-Linked-Etag)
SKIN = np.random.default_rng(1).bytes(3 * MiB + 1234)
SDXL = np.random.default_rng(2).bytes(2 * MiB + 77)
AE = np.random.default_rng(3).bytes(300_000)
SUPIR = np.random.default_rng(4).bytes(100_000)

FETCH_PRESET = """
name = "fetch-demo"
scale = 1.0

[[stage]]
id = "detail"
kind = "upscale_model"
model = "skin_detail"

[[stage]]
id = "base"
kind = "upscale_model"
model = "sdxl"
"""

GATED_PRESET = """
name = "fetch-gated"
scale = 1.0

[[stage]]
id = "vae"
kind = "upscale_model"
model = "flux_vae"
"""

_ENTRY = """
[[file]]
role = "{role}"
variant = "{variant}"
use = "default"
presets = ["{preset}"]
filename = "{filename}"
kind = "file"
comfy_folder = "{folder}"
size = {size}
licence = "{licence}"
non_commercial = {nc}
gated = {gated}
evidence = "publisher"
supported = true
verified = "tests/_models_helpers.py: a tiny file on the Hub stand-in"
{source}
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def standin() -> HubStandIn:
    hub = HubStandIn()
    hub.releases["1x-ITF-SkinDiffDetail-Lite-v1.pth"] = SKIN
    hub.lfs["test-org/sdxl/sd_xl_base_1.0_0.9vae.safetensors"] = SDXL
    hub.lfs["test-org/flux-gated/ae.safetensors"] = AE
    hub.gated["test-org/flux-gated"] = 401
    hub.lfs["test-org/supir/SUPIR-v0Q_fp16.safetensors"] = SUPIR
    return hub


def write_catalogue(path: Path, hub: HubStandIn, *, supir_sha: str | None = None) -> Path:
    entries = [
        dict(role="skin_detail", variant="pth", preset="fetch-demo", filename="1x-ITF-SkinDiffDetail-Lite-v1.pth",
             folder="upscale_models", size=len(SKIN), licence="CC-BY-NC-SA-4.0", nc="true", gated="false",
             source=f'source = "url"\nurl = "{hub.release_url("1x-ITF-SkinDiffDetail-Lite-v1.pth")}"\n'
                    f'sha256 = "{sha(SKIN)}"'),
        dict(role="sdxl", variant="base", preset="fetch-demo", filename="sd_xl_base_1.0_0.9vae.safetensors",
             folder="checkpoints", size=len(SDXL), licence="CreativeML Open RAIL++-M", nc="false", gated="false",
             source='source = "hf"\nrepo = "test-org/sdxl"\npath = "sd_xl_base_1.0_0.9vae.safetensors"'),
        dict(role="flux_vae", variant="dev", preset="fetch-gated", filename="ae.safetensors", folder="vae",
             size=len(AE), licence="FLUX.1 [dev] Non-Commercial License", nc="false", gated="true",
             source='source = "hf"\nrepo = "test-org/flux-gated"\npath = "ae.safetensors"'),
        dict(role="supir_v0q", variant="fp16", preset="", filename="SUPIR-v0Q_fp16.safetensors",
             folder="checkpoints", size=len(SUPIR), licence="SUPIR", nc="false", gated="false",
             source=f'source = "hf"\nrepo = "test-org/supir"\npath = "SUPIR-v0Q_fp16.safetensors"\n'
                    f'sha256 = "{supir_sha or sha(SUPIR)}"'),
    ]
    path.write_text("".join(_ENTRY.format(**e) for e in entries), encoding="utf-8")
    return path


def write_presets() -> None:
    folder = user_presets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fetch-demo.toml").write_text(FETCH_PRESET, encoding="utf-8")
    (folder / "fetch-gated.toml").write_text(GATED_PRESET, encoding="utf-8")


def hidden_leftovers(root: Path) -> list[Path]:
    """Partial files and markers a download may leave (hidden names the locator skips)."""
    return sorted(p for p in root.rglob(".*") if p.is_file())


def subprocess_env(hub: HubStandIn, catalogue: Path, hf_home: Path) -> dict[str, str]:
    """A `dermis` process that reaches only the stand-in: endpoint, catalogue, no offline switch, no token."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=hub.endpoint, DERMIS_CATALOGUE=str(catalogue), HF_HOME=str(hf_home),
               HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return env
