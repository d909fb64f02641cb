"""Full-size key manifests: every key of the released SUPIR-v0Q and of sd_xl_base_1.0 (UNet, VAE and
the two text encoders) maps onto Dermis's modules with the right shape. Built on the meta device, so
the 2.6 B + 1.3 B parameters cost no memory; the same inference and key maps as the real loaders."""

from __future__ import annotations

import json

import pytest

from pipeline.models.sdxl.keymap import verify
from pipeline.models.sdxl.load import sdxl_parts
from pipeline.models.supir.connectors import connector_sites
from pipeline.models.supir.load import IGNORED, supir_parts

from ._supir_helpers import require_fixtures

pytestmark = pytest.mark.parity


def _manifest(name: str) -> dict:
    d = require_fixtures(name)
    return json.loads((d / name).read_text())


@pytest.fixture(scope="module")
def sdxl():
    m = _manifest("sdxl_base.keys.json")
    shapes = {k: tuple(v) for k, v in {**m["keys"], **m["conditioner_keys"]}.items()}
    return shapes, sdxl_parts(shapes, "sd_xl_base_1.0.safetensors")


def test_every_sdxl_key_maps_with_its_shape(sdxl):
    shapes, parts = sdxl
    a = parts["unet_arch"]
    assert (a.widths, a.layers, a.depth, a.context_dim, a.adm_in_channels, a.add_time_dim) == (
        (320, 640, 1280), 2, (1, 2, 10), 2048, 2816, 256)
    named = [parts[n] for n in ("unet", "vae", "te1", "te2")]
    # whole_file: every manifest key is used by some module (position_ids / logit_scale are ignorable)
    verify("sd_xl_base_1.0", shapes, named, "SDXL", whole_file=True)
    mapped = set().union(*(km.file_keys() for km, _ in named))
    extra = set(shapes) - mapped
    assert extra <= {"conditioner.embedders.1.model.logit_scale",
                     "conditioner.embedders.0.transformer.text_model.embeddings.position_ids"}
    n_params = sum(p.numel() for _, mod in named for p in mod.parameters())
    assert n_params == 2_567_463_684 + 83_653_863 + 817_720_321 - 1  # all but logit_scale


def test_every_supir_v0q_key_maps_with_its_shape(sdxl):
    _, parts = sdxl
    m = _manifest("SUPIR-v0Q.keys.json")
    shapes = {k: tuple(v) for k, v in m["keys"].items()}
    assert len(shapes) == 1035
    sp = supir_parts(shapes, "SUPIR-v0Q.ckpt", parts["unet_arch"], parts["vae_arch"])
    verify("SUPIR-v0Q.ckpt", shapes, list(sp.values()), "SUPIR-v0", whole_file=True, ignore=IGNORED)
    used = set().union(*(km.file_keys() for km, _ in sp.values()))
    assert used | IGNORED == set(shapes)
    counts = {n: sum(p.numel() for p in mod.parameters()) for n, (_, mod) in sp.items()}
    assert counts == {"control": 1_243_395_264 - 4 * 64 * 64, "connectors": 54_797_440, "denoise_encoder": 34_163_592}
    kinds = [s.kind for s in reversed(connector_sites(parts["unet_arch"]))]
    assert kinds.count("sft") == 10 and [i for i, k in enumerate(kinds) if k == "xattn"] == [3, 7]
