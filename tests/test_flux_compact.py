"""Compact FLUX transformers: GGUF blocks against the gguf package's reference, tiny GGUF files in the
real layout within 1e-2 of the fp32 model, scaled fp8 exact against its own dequantisation, the
full-size GGUF key list on the meta device, bad files, and which file the lookup finds."""

from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.config import Config
from pipeline.errors import WrongWeights
from pipeline.models import WeightLocator
from pipeline.models.flux import convert as fc
from pipeline.models.flux import load as fl
from pipeline.models.flux import tiny as tiny_flux
from pipeline.models.flux.arch import FLUX_DEV, FluxArch
from pipeline.models.flux.compact import GGUF_KEEP, gguf_manifest
from pipeline.models.flux.variant import FP8_BELOW, describe, fp8_policy
from pipeline.models.meta import MetaSource
from pipeline.models.quant import CastLinear, QuantLinear
from pipeline.models.quant import dequant as dq
from pipeline.models.quant import quantize as qz
from pipeline.models.tensor_files import stream_into

from ._flux_helpers import flux_fixtures
from ._parity import DEQUANT, QUANTISED, assert_parity, assert_rejected

FIX = flux_fixtures()
VARIANTS = "unet/variants"
FP8_VS_FP32 = 0.1  # fp8 has 3 mantissa bits: a sanity bound only (measured 3.7e-2); fp8 is exact vs itself


def _blocks(qtype: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """Random blocks of ``qtype`` whose fp16 scales are finite and small (random bytes elsewhere)."""
    rng = np.random.default_rng(seed)
    _, size = dq.BLOCKS[qtype]
    raw = rng.integers(0, 256, (n, size), dtype=np.uint8)
    scales = [(208, 210)] if qtype == dq.Q6_K else [(0, 2)] + ([(2, 4)] if qtype in (dq.Q4_1, dq.Q5_1, dq.Q4_K, dq.Q5_K) else [])
    for a, b in scales:
        raw[:, a:b] = rng.uniform(1e-3, 0.1, n).astype(np.float16).view(np.uint8).reshape(n, 2)
    return raw


@pytest.mark.parity
@pytest.mark.parametrize("qtype", [dq.Q8_0, dq.Q4_0, dq.Q4_1, dq.Q5_0, dq.Q5_1, dq.Q4_K, dq.Q5_K, dq.Q6_K],
                         ids=lambda q: dq.NAMES[q])
def test_block_dequantisation_matches_the_gguf_package(qtype):
    raw = _blocks(qtype)
    block, _ = dq.BLOCKS[qtype]
    ref = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).reshape(-1))
    ours = dq.dequantize(torch.from_numpy(raw), qtype, (raw.shape[0] * block,))
    assert_parity(ours, ref, DEQUANT, dq.NAMES[qtype], family="gguf.dequant")
    bad = raw.copy()
    bad[0, -1] ^= 0x10  # one bit of the block's last byte (a value, or Q6_K's scale)
    assert_rejected(dq.dequantize(torch.from_numpy(bad), qtype, ref.shape), ref, DEQUANT, f"{dq.NAMES[qtype]} bit flipped")


def test_quantisers_write_what_readers_read():
    x = torch.randn(8, 512, generator=torch.Generator().manual_seed(1)) * 3
    x[0, :32] = 0  # an all-zero block: scale 0
    q8 = qz.quantise(x, dq.Q8_0)  # the torch Q8_0 writer is byte-for-byte the package's quantiser
    assert np.array_equal(q8, gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType.Q8_0))
    for qtype, bound in ((dq.Q4_K, 0.1), (dq.Q5_K, 0.05)):  # half a step of 15 / 31 levels, plus 6-bit scales
        raw = qz.quantise(x, qtype)
        assert raw.shape == (8, 512 // 256 * dq.BLOCKS[qtype][1])
        back = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype))  # read by the reference
        assert np.abs(back - x.numpy()).max() / np.abs(x.numpy()).max() < bound


# ------------------------------------------------------------------------ tiny files, real layouts


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(6.0), indexing="ij"), -1)
    return dict(hidden_states=torch.randn(2, 24, 64, generator=g), encoder_hidden_states=torch.randn(2, 8, 32, generator=g),
                pooled_projections=torch.randn(2, 32, generator=g), timestep=torch.tensor([0.75, 0.3]),
                guidance=torch.tensor([3.5, 2.0]), img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(8, 3),
                return_dict=False)


@torch.no_grad()
def _forward(model):
    return model(**_inputs())[0]


@pytest.fixture(scope="module")
def reference():
    return _forward(tiny_flux.compact_transformer())


@pytest.mark.parity
@pytest.mark.parametrize("name,types", [("flux1-dev-Q8_0.gguf", {dq.Q8_0}),
                                        ("flux1-dev-Q4_K_M.gguf", {dq.Q4_K, dq.Q5_K})])
def test_gguf_transformer_stays_quantised_and_matches_fp32(tiny_models, reference, name, types):
    model = fl.load_transformer(tiny_models / VARIANTS / name, torch.float32)
    quantised = [m for m in model.modules() if isinstance(m, QuantLinear)]
    assert {m.qtype for m in quantised} == types  # ComfyUI-GGUF's layout: F32/BF16 for the rest
    for m in quantised:  # the blocks as stored, never widened
        assert m.weight.dtype == torch.uint8 and m.weight.shape == (m.out_features, dq.row_bytes(m.in_features, m.qtype))
    assert_parity(_forward(model), reference, QUANTISED, name, family="flux.gguf")
    # negative control: q and k of the first double block swapped (a wrong row split of the fused qkv)
    attn = model.transformer_blocks[0].attn
    attn.to_q.weight, attn.to_k.weight = attn.to_k.weight, attn.to_q.weight
    assert_rejected(_forward(model), reference, QUANTISED, f"{name} with q/k swapped")


@pytest.mark.parity
def test_scaled_fp8_is_exact_against_its_own_dequantisation(tiny_models, reference):
    path = tiny_models / VARIANTS / "flux1-dev-fp8-e4m3fn-scaled.safetensors"
    kept = fl.load_transformer(path, torch.float32, fp8="keep")
    widened = fl.load_transformer(path, torch.float32, fp8="upcast")
    layers = [m for m in kept.modules() if isinstance(m, CastLinear)]
    assert layers and all(m.weight.dtype == torch.float8_e4m3fn and m.scale_weight is not None for m in layers)
    assert not any(isinstance(m, CastLinear) for m in widened.modules())
    # one layer by hand from the file: weight.to(float32) * scale_weight (ComfyUI's scaled_fp8_op)
    raw = load_file(str(path))
    want = raw["single_blocks.0.linear2.weight"].float() * raw["single_blocks.0.linear2.scale_weight"]
    layer = kept.single_transformer_blocks[0].proj_out
    assert torch.equal(layer.weight.float() * layer.scale_weight, want)
    assert torch.equal(widened.single_transformer_blocks[0].proj_out.weight, want)
    out = _forward(kept)
    assert_parity(out, _forward(widened), DEQUANT, "fp8 kept vs widened at load", family="flux.fp8")
    assert (out - reference).abs().max() / reference.abs().max() < FP8_VS_FP32
    with torch.no_grad():
        layer.scale_weight.mul_(1.001)  # negative control: one scale off by 1e-3
    assert_rejected(_forward(kept), _forward(widened), DEQUANT, "one scale_weight moved 1e-3")


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2], ids=["e4m3fn", "e5m2"])
def test_plain_fp8_files_stay_fp8_and_are_exact_against_their_own_upcast(tmp_path, reference, dtype):
    """Kijai's flux1-dev-fp8-e4m3fn / -e5m2 layout: 2-D weights float8, no scales, the rest bf16."""
    from safetensors.torch import save_file

    bfl = tiny_flux.bfl_transformer_state(tiny_flux.compact_transformer().state_dict(), tiny_flux.COMPACT)
    path = tmp_path / f"flux1-dev-fp8-{str(dtype).split('_')[-1]}.safetensors"
    save_file({k: (t.to(dtype) if t.ndim == 2 and k.endswith(".weight") else t.to(torch.bfloat16)).contiguous()
               for k, t in bfl.items()}, str(path))
    kept = fl.load_transformer(path, torch.float32, fp8="keep")
    widened = fl.load_transformer(path, torch.float32, fp8="upcast")
    layers = [m for m in kept.modules() if isinstance(m, CastLinear)]
    assert layers and all(m.weight.dtype == dtype and m.scale_weight is None for m in layers)
    out = _forward(kept)
    assert_parity(out, _forward(widened), DEQUANT, f"{dtype} kept vs widened at load", family="flux.fp8")
    assert (out - reference).abs().max() / reference.abs().max() < FP8_VS_FP32 * (2 if dtype == torch.float8_e5m2 else 1)
    with torch.no_grad():  # negative control: one fp8 weight replaced by its neighbour layer's
        layers[0].weight.copy_(layers[0].weight.flip(0))
    assert_rejected(_forward(kept), _forward(widened), DEQUANT, f"{dtype} one layer's rows reversed")


@pytest.mark.parity
def test_scaled_fp8_t5_applies_its_scales(tmp_path):
    """ComfyUI's t5xxl_fp8_e4m3fn_scaled layout: each weight times its scale_weight, exactly."""
    from safetensors.torch import save_file

    from pipeline.models.flux import text as ft
    from pipeline.models.flux.compact import fp8_state

    t5 = tiny_flux.tiny_parts()[3]
    state = fp8_state(dict(t5.state_dict()), scaled=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"))
    loaded = ft.load_t5(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors", torch.float32)
    want = {k: (v.float() * state[k[: -len(".weight")] + ".scale_weight"]) if k[: -len(".weight")] + ".scale_weight" in state
            else v.float() for k, v in state.items() if k in t5.state_dict()}
    t5.load_state_dict(want, strict=False)
    ids = torch.arange(3, 19).reshape(1, 16)
    with torch.no_grad():
        ref = t5(ids)[0]
        assert_parity(loaded(ids)[0], ref, DEQUANT, "scaled fp8 T5 vs its own dequantisation", family="flux.fp8")
        name = "encoder.block.0.layer.0.SelfAttention.q.weight"
        loaded.get_parameter(name).mul_(1.001)  # negative control: one scale off by 1e-3
        assert_rejected(loaded(ids)[0], ref, DEQUANT, "T5 with one scale moved 1e-3")


def test_weight_dtype_fp8_casts_a_wide_file_like_comfyui(tiny_models):
    model = fl.load_transformer(tiny_models / "unet/flux1-dev.safetensors", torch.float32, fp8="cast")
    layers = [m for m in model.modules() if isinstance(m, CastLinear)]
    linears = [m for m in tiny_flux.tiny_parts()[0].modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == len(linears) and all(m.weight.dtype == torch.float8_e4m3fn for m in layers)
    assert all(m.scale_weight is None for m in layers)
    assert torch.isfinite(model(**{**_inputs(), "hidden_states": torch.randn(2, 24, 64)})[0]).all()


# --------------------------------------------------------------------------- full size, meta device


@pytest.mark.parity
@pytest.mark.skipif(not FIX.is_dir(), reason=f"FLUX fixtures not found at {FIX}")
@pytest.mark.parametrize("file_type", ["Q8_0", "Q4_K_M"])
def test_full_size_gguf_key_list_maps_on_the_meta_device(file_type):
    from diffusers import FluxTransformer2DModel

    bfl = json.loads((FIX / "flux1-dev.bfl.keys.json").read_text())["keys"]
    layout = qz.manifest(bfl.items(), file_type, GGUF_KEEP)  # ComfyUI-GGUF's rules on the BFL key list
    assert {(n, s) for n, s, _ in layout} == {(n, s) for n, s, _ in gguf_manifest(FLUX_DEV, file_type)}
    src = MetaSource({n: s for n, s, _ in layout}, f"flux1-dev-{file_type}.gguf", qtypes={n: q for n, _, q in layout})
    arch = FluxArch.from_shapes(src.shapes(), "bfl", src.origin)
    assert arch == FLUX_DEV and fc.transformer_layout(src.keys()) == "bfl"
    plan = fl.transformer_plan(src, "bfl", arch)  # every file tensor used
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(arch.to_diffusers())
    stream_into(model, src, plan, dtype=torch.bfloat16, device="meta", what="FLUX.1-dev")  # every key, strict
    quantised = [m for m in model.modules() if isinstance(m, QuantLinear)]
    n_quantised = sum(1 for _, s, q in layout if q in dq.BLOCKS)
    # fused qkv (3 Linears each) and single-block linear1 (q, k, v, mlp) split into more layers
    assert len(quantised) == n_quantised + 2 * 2 * 19 + 3 * 38
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    if file_type == "Q8_0":  # the "≈12.7 GB, not 24"
        assert 12.5e9 < held < 12.9e9, held
    else:
        assert 6.5e9 < held < 7.5e9, held


# ------------------------------------------------------------------------------------- bad files


def test_unreadable_and_truncated_gguf_files_say_so(tmp_path, tiny_models):
    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), arch="flux")
    w.add_tensor("double_blocks.0.img_attn.qkv.weight", np.zeros((4, 144), dtype=np.uint8),  # 4 x 256 values
                 raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(WrongWeights, match=r"cannot read: double_blocks\.0\.img_attn\.qkv\.weight \(IQ4_NL\).*Q8_0"):
        fl.load_transformer(tmp_path / "iq.gguf", torch.float32)
    data = (tiny_models / VARIANTS / "flux1-dev-Q8_0.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 4096])
    with pytest.raises(WrongWeights, match="cut.gguf"):
        fl.load_transformer(tmp_path / "cut.gguf", torch.float32)


def test_gguf_with_a_missing_tensor_names_it(tmp_path):
    arch = tiny_flux.COMPACT
    bfl = tiny_flux.bfl_transformer_state(tiny_flux.compact_transformer().state_dict(), arch)
    layout = [t for t in gguf_manifest(arch, "Q8_0") if t[0] != "single_blocks.0.linear2.weight"]
    qz.write_gguf(tmp_path / "lacking.gguf", "flux", layout, bfl.__getitem__)
    with pytest.raises(WrongWeights, match=r"missing keys \(1\): single_blocks\.0\.linear2\.weight"):
        fl.load_transformer(tmp_path / "lacking.gguf", torch.float32)


# ------------------------------------------------------------------------- lookup and the variant


def test_gguf_and_fp8_files_are_found_srpo_and_full_precision_first(tmp_path, tiny_models):
    src = tiny_models / VARIANTS
    unet = tmp_path / "unet"
    unet.mkdir()
    locate = WeightLocator(Config(comfy_models=(tmp_path,)))
    shutil.copy(src / "flux1-dev-Q8_0.gguf", unet)
    assert locate.find("flux_transformer") == unet / "flux1-dev-Q8_0.gguf"
    shutil.copy(src / "flux1-dev-fp8-e4m3fn-scaled.safetensors", unet)
    assert locate.find("flux_transformer") == unet / "flux1-dev-fp8-e4m3fn-scaled.safetensors"
    shutil.copy(src / "flux1-dev-Q8_0.gguf", unet / "flux1-dev-SRPO-Q8_0.gguf")
    assert locate.find("flux_transformer") == unet / "flux1-dev-SRPO-Q8_0.gguf"


def test_variant_and_weight_dtype_choice(tiny_models):
    q8 = describe(tiny_models / VARIANTS / "flux1-dev-Q8_0.gguf")
    assert q8.kind == "gguf" and q8.detail.startswith("GGUF Q8_0 (") and "BF16" in q8.detail
    fp8 = describe(tiny_models / VARIANTS / "flux1-dev-fp8-e4m3fn-scaled.safetensors")
    assert fp8.kind == "fp8" and "scaled" in fp8.detail and fp8.weight_bytes["keep"] < 0.6 * fp8.weight_bytes["upcast"]
    bf16 = describe(tiny_models / "unet/flux1-dev.safetensors")
    assert bf16.kind == "bf16" and bf16.weight_bytes["cast"] < bf16.weight_bytes["upcast"]
    assert fp8_policy("auto", fp8, FP8_BELOW - 1)[0] == "keep"
    assert fp8_policy("auto", fp8, FP8_BELOW)[0] == "upcast"
    assert fp8_policy("auto", fp8, None)[0] == "upcast"  # no CUDA: nothing to save
    assert fp8_policy("default", fp8, 0)[0] == "upcast"
    assert fp8_policy("fp8", bf16, 10**12) == ("cast", fp8_policy("fp8", bf16, 0)[1]) and "blur" in fp8_policy("fp8", bf16, 0)[1]
    assert fp8_policy("fp8", q8, 0)[0] == "upcast" and "stays quantised" in fp8_policy("fp8", q8, 0)[1]
