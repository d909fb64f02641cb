"""FLUX weights: parity with BFL's reference forward, full-size key manifests, every on-disk layout."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import WrongWeights
from pipeline.models.flux import convert as fc
from pipeline.models.flux import load as fl
from pipeline.models.flux import text as ft
from pipeline.models.flux import tiny as tiny_flux
from pipeline.models.flux.arch import FLUX_DEV, VAE_SCALING, VAE_SHIFT, FluxArch, FluxVaeArch
from pipeline.models.meta import MetaSource
from pipeline.models.tensor_files import check_tensors, predicted_shapes

from ._flux_helpers import flux_fixtures
from ._parity import MODEL, assert_parity, assert_rejected, perturbed

FIX = flux_fixtures()
needs_fixtures = pytest.mark.skipif(not FIX.is_dir(), reason=f"FLUX fixtures not found at {FIX} "
                                    "(set DERMIS_FLUX_FIXTURES or check out ../shared)")


def _load_fixture(name: str):
    """(the fixture transformer loaded through our loader, the reference inputs and output, its config)."""
    cfg = json.loads((FIX / "tiny_transformer_config.json").read_text())
    model = fl.load_transformer(FIX / name, torch.float32, arch=FluxArch.from_diffusers(cfg))
    return model, load_file(str(FIX / "tiny_bfl_expected.safetensors")), cfg


def _forward(model, exp):
    with torch.no_grad():
        return model(hidden_states=exp["img"], encoder_hidden_states=exp["txt"], pooled_projections=exp["y"],
                     timestep=exp["timesteps"], img_ids=exp["img_ids"][0], txt_ids=exp["txt_ids"][0],
                     guidance=exp["guidance"], return_dict=False)[0]


# ------------------------------------------------------------------------------------ parity


@pytest.mark.parity
@needs_fixtures
@pytest.mark.parametrize("name", ["tiny_bfl_transformer.safetensors", "tiny_diffusers_transformer.safetensors"])
def test_tiny_transformer_matches_bfl_reference_forward(name):
    model, exp, cfg = _load_fixture(name)
    out = _forward(model, exp)
    assert_parity(out, exp["output"], MODEL, name, family="flux.transformer")
    # without the config every size is read from the shapes; only the RoPE split is a convention
    inferred = fl.load_transformer(FIX / name, torch.float32).config
    for k in ("in_channels", "num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads",
              "joint_attention_dim", "pooled_projection_dim", "guidance_embeds"):
        assert inferred[k] == cfg[k], k


@pytest.mark.parity
@needs_fixtures
@pytest.mark.parametrize("param", ["proj_out.weight", "transformer_blocks.0.ff.net.2.weight"])
def test_negative_control_transformer_with_one_weight_off(param):
    model, exp, _ = _load_fixture("tiny_bfl_transformer.safetensors")
    with perturbed(model.get_parameter(param)):
        out = _forward(model, exp)
    assert_rejected(out, exp["output"], MODEL, f"{param} moved 1e-3")


@pytest.mark.parity
@needs_fixtures
@pytest.mark.parametrize("manifest", ["flux1-dev.bfl.keys.json", "flux1-dev.diffusers.keys.json"])
def test_full_size_transformer_manifest_maps_every_key(manifest):
    from diffusers import FluxTransformer2DModel

    data = json.loads((FIX / manifest).read_text())
    src = MetaSource(data["keys"], manifest)
    layout = fc.transformer_layout(src.keys())
    arch = FluxArch.from_shapes(src.shapes(), layout, src.origin)
    assert arch == FLUX_DEV
    plan = fl.transformer_plan(src, layout, arch)  # raises if a file tensor is unused or missing
    assert {s for s, _ in plan.values()} == set(data["keys"])
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(arch.to_diffusers())
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = predicted_shapes(src, plan)
    check_tensors(src.origin, got, want, "does not match FLUX.1-dev")
    assert len(got) == 1160 and sum(torch.Size(s).numel() for s in got.values()) == 11_901_408_320


@pytest.mark.parity
@needs_fixtures
def test_full_size_vae_manifest_maps_every_key():
    from diffusers import AutoencoderKL

    data = json.loads((FIX / "flux_vae.keys.json").read_text())
    src = MetaSource(data["bfl"]["keys"], "ae.safetensors")
    layout = fc.vae_layout(src.keys())
    arch = FluxVaeArch.from_shapes(src.shapes(), layout, src.origin)
    cfg = arch.to_diffusers()
    for k, v in data["diffusers"]["config"].items():
        got = cfg.get(k)  # latents_mean/std: None in both
        assert (tuple(got) if isinstance(v, list) else got) == (tuple(v) if isinstance(v, list) else v), k
    with torch.device("meta"):
        model = AutoencoderKL.from_config(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    plan = fl.vae_plan(src, layout, want, len(arch.widths))  # raises if a file tensor is unused or missing
    got = predicted_shapes(src, plan)
    check_tensors(src.origin, got, want, "does not match the FLUX VAE")
    assert set(got) == set(data["diffusers"]["keys"]) and len(got) == 244


@pytest.mark.parity
@needs_fixtures
def test_full_size_text_encoder_configs_from_shapes():
    from transformers import CLIPTextModel, T5EncoderModel

    data = json.loads((FIX / "flux_text_encoders.keys.json").read_text())
    for key, config_of, cls in (("clip_l", ft.clip_config, CLIPTextModel), ("t5_xxl_encoder", ft.t5_config, T5EncoderModel)):
        shapes = data[key]["keys"]
        cfg = config_of(shapes, key)
        for name, value in data[key]["config"].items():
            if name not in ("tie_word_embeddings", "dense_act_fn", "is_gated_act"):
                assert getattr(cfg, name) == value, (key, name)
        with torch.device("meta"):
            model = cls(cfg)
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes


# ------------------------------------------------------------------- the layouts users have


def test_bfl_and_srpo_layout_files_give_the_same_transformer(tiny_models):
    srpo = fl.load_transformer(tiny_models / "diffusion_models/SRPO/diffusion_pytorch_model.safetensors",
                               torch.bfloat16)
    bfl = fl.load_transformer(tiny_models / "unet/flux1-dev.safetensors", torch.bfloat16)
    assert srpo.config == bfl.config and tuple(bfl.config["axes_dims_rope"]) == tiny_flux.TRANSFORMER.axes_dim
    a, b = srpo.state_dict(), bfl.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(p.dtype == torch.bfloat16 for p in srpo.parameters())  # fp32 file, cast while streaming


def test_comfy_checkpoint_prefix_is_stripped(tmp_path, tiny_models):
    sd = load_file(str(tiny_models / "unet/flux1-dev.safetensors"))
    path = tmp_path / "flux1-dev-aio.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in sd.items()}, str(path))
    model = fl.load_transformer(path, torch.float32)
    assert torch.equal(model.x_embedder.weight, sd["img_in.weight"].float())


def test_wrong_transformer_files_name_the_keys(tmp_path, tiny_models):
    sd = load_file(str(tiny_models / "unet/flux1-dev.safetensors"))
    lacking = dict(sd)
    del lacking["single_blocks.0.linear2.weight"]
    save_file(lacking, str(tmp_path / "lacking.safetensors"))
    with pytest.raises(WrongWeights, match=r"missing keys \(1\): single_blocks\.0\.linear2\.weight"):
        fl.load_transformer(tmp_path / "lacking.safetensors", torch.float32)
    save_file({**sd, "double_blocks.0.img_attn.lora_up.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(WrongWeights, match=r"unexpected keys \(1\): double_blocks\.0\.img_attn\.lora_up\.weight"):
        fl.load_transformer(tmp_path / "extra.safetensors", torch.float32)
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(WrongWeights, match="is not a FLUX.1 transformer"):
        fl.load_transformer(tmp_path / "vae.safetensors", torch.float32)


def test_streaming_reads_each_fused_tensor_once(tiny_models, monkeypatch):
    from pipeline.models.tensor_files import TensorSource

    reads: list[str] = []
    original = TensorSource.read
    monkeypatch.setattr(TensorSource, "read", lambda self, k: reads.append(k) or original(self, k))
    fl.load_transformer(tiny_models / "unet/flux1-dev.safetensors", torch.float32)
    assert len(reads) == len(set(reads)) == len(load_file(str(tiny_models / "unet/flux1-dev.safetensors")))


def test_bfl_vae_file_round_trips_through_diffusers_converter(tiny_models):
    _, vae, *_ = tiny_flux.tiny_parts()
    loaded = fl.load_vae(tiny_models / "vae/ae.safetensors", torch.float32)
    a, b = vae.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.scaling_factor == VAE_SCALING and loaded.config.shift_factor == VAE_SHIFT


def test_vae_with_foreign_tensors_is_refused(tmp_path, tiny_models):
    sd = load_file(str(tiny_models / "vae/ae.safetensors"))
    save_file({**sd, "encoder.extra.weight": torch.zeros(3)}, str(tmp_path / "ae.safetensors"))
    with pytest.raises(WrongWeights, match="encoder.extra.weight"):
        fl.load_vae(tmp_path / "ae.safetensors", torch.float32)


@pytest.mark.parity
def test_text_encoder_files_and_tokenizer_folders_match_the_originals(tiny_models):
    _, _, clip, t5, ctok, ttok = tiny_flux.tiny_parts()
    clip_tok, t5_tok = ft.load_tokenizers(tiny_models / "tokenizers/sd1_tokenizer",
                                          tiny_models / "tokenizers/t5_tokenizer")
    text = ft.TextEncoders(clip=ft.load_clip(tiny_models / "text_encoders/clip_l.safetensors", torch.float32),
                           t5=ft.load_t5(tiny_models / "text_encoders/t5xxl_fp16.safetensors", torch.float32),
                           clip_tokenizer=clip_tok, t5_tokenizer=t5_tok)
    assert text.t5.encoder.embed_tokens.weight is text.t5.shared.weight  # tied, stored once in the file
    ref = ft.TextEncoders(clip=clip.half().float(), t5=t5.half().float(), clip_tokenizer=ctok, t5_tokenizer=ttok)
    got = ft.encode_prompt(text, "Pores, freckles.", t5_tokens=64)
    want = ft.encode_prompt(ref, "Pores, freckles.", t5_tokens=64)
    assert got.prompt_embeds.shape == (1, 64, 32) and got.pooled.shape == (1, 32)
    assert_parity(got.prompt_embeds, want.prompt_embeds, MODEL, "T5 prompt embeddings", family="text_encoders")
    assert_parity(got.pooled, want.pooled, MODEL, "CLIP pooled", family="text_encoders")
    # negative control: one weight of each loaded encoder moved by 1e-3
    with perturbed(text.t5.get_parameter("encoder.block.0.layer.1.DenseReluDense.wo.weight")), \
            perturbed(text.clip.get_parameter("text_projection.weight" if hasattr(text.clip, "text_projection")
                                              else "final_layer_norm.weight")):
        bad = ft.encode_prompt(text, "Pores, freckles.", t5_tokens=64)
    assert_rejected(bad.prompt_embeds, want.prompt_embeds, MODEL, "T5 with one weight moved 1e-3")
    assert_rejected(bad.pooled, want.pooled, MODEL, "CLIP with one weight moved 1e-3")


def test_diffusers_folder_parts_load(tmp_path):
    folder = tiny_flux.build_flux_diffusers(tmp_path / "FLUX.1-dev")
    model = fl.load_transformer(folder / "transformer", torch.float32)
    ref, vae_ref, clip_ref, *_ = tiny_flux.tiny_parts()
    assert torch.equal(model.proj_out.weight, ref.proj_out.weight)
    vae = fl.load_vae(folder / "vae", torch.float32)
    assert torch.equal(vae.decoder.conv_out.weight, vae_ref.decoder.conv_out.weight)
    clip = ft.load_clip(folder / "text_encoder", torch.float32)
    assert torch.equal(clip.text_model.embeddings.token_embedding.weight if hasattr(clip, "text_model")
                       else clip.embeddings.token_embedding.weight,
                       clip_ref.state_dict()["embeddings.token_embedding.weight"])
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(WrongWeights):
        ft.load_tokenizers(folder / "tokenizer", folder / "tokenizer_2")


# ------------------------------------------------------------------------------- architecture


def test_flux_arch_is_checked_when_made_and_round_trips_diffusers_configs(tmp_path, tiny_models):
    with pytest.raises(ValueError, match="hidden size 3001 is not divisible by 24 heads"):
        FluxArch(**{**FLUX_DEV.__dict__, "hidden_size": 3001})
    with pytest.raises(ValueError, match=r"RoPE axes \(16, 56, 48\) add up to 120, not to the head width 128"):
        FluxArch(**{**FLUX_DEV.__dict__, "axes_dim": (16, 56, 48)})
    with pytest.raises(ValueError, match="MLP ratio 3.0"):
        FluxArch(**{**FLUX_DEV.__dict__, "mlp_ratio": 3.0})
    assert FluxArch.from_diffusers(FLUX_DEV.to_diffusers()) == FLUX_DEV
    assert FLUX_DEV.head_dim == 128 and FLUX_DEV.to_diffusers()["out_channels"] is None
    # a config.json next to the weights that describes no FLUX: the file is named, the numbers given
    shutil.copy(tiny_models / "diffusion_models/SRPO/diffusion_pytorch_model.safetensors", tmp_path)
    config = tiny_flux.TRANSFORMER.to_diffusers() | {"_class_name": "FluxTransformer2DModel", "axes_dims_rope": [8, 8, 8]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WrongWeights, match=r"config.json describing no FLUX.1 architecture .*add up to 24, not to "
                                           r"the head width 16"):
        fl.load_transformer(tmp_path / "diffusion_pytorch_model.safetensors", torch.float32)
    (tmp_path / "config.json").write_text(json.dumps(config | {"axes_dims_rope": [4, 6, 6]}))
    assert fl.load_transformer(tmp_path / "diffusion_pytorch_model.safetensors", torch.float32).config[
        "axes_dims_rope"] == (4, 6, 6)  # the sidecar's RoPE split is used as given
