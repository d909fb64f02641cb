"""SDXL / SUPIR loading: the tiny files in the real layouts, diffusers' own single-file loader as an
independent check of the key maps, and clear errors for wrong, incomplete or unsafe files."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import MissingWeights, WrongWeights
from pipeline.models.sdxl import text
from pipeline.models.sdxl.load import load_sdxl
from pipeline.models.supir.load import load_supir
from pipeline.models.supir.pipeline import load_models
from pipeline.models.tiny import clip_tokenizer
from pipeline.models.weights import WeightLocator

SDXL = "checkpoints/sd_xl_base_1.0_tiny-random.safetensors"
V0Q = "checkpoints/SUPIR-v0Q_tiny-random.ckpt"
V0F = "checkpoints/SUPIR-v0F_tiny-random_fp16.safetensors"


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    return load_sdxl(tiny_models / SDXL)


def test_tiny_files_load_in_both_supir_formats(tiny_models, sdxl):
    q = load_supir(tiny_models / V0Q, sdxl.unet_arch, sdxl.vae_arch)  # fp32 pickle, weights_only
    f = load_supir(tiny_models / V0F, sdxl.unet_arch, sdxl.vae_arch)  # fp16 safetensors, upcast
    assert len(q.connectors) == len(f.connectors) == 12
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in f.control.parameters())
    assert sdxl.te1.config.hidden_size != sdxl.te2.config.hidden_size


def test_diffusers_single_file_loader_agrees_with_our_key_maps(tiny_models, sdxl, tmp_path):
    """diffusers reads the same SGM file (with a local config folder) into the same tensors; and our
    loader reads the diffusers folder that pipeline saves."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=sdxl.vae, text_encoder=sdxl.te1, text_encoder_2=sdxl.te2, tokenizer=clip_tokenizer("<|endoftext|>"),
        tokenizer_2=clip_tokenizer("!"), unet=sdxl.unet, scheduler=EulerDiscreteScheduler())
    folder = tmp_path / "sdxl-diffusers"
    pipe.save_pretrained(folder)
    oracle = StableDiffusionXLPipeline.from_single_file(str(tiny_models / SDXL), config=str(folder),
                                                        local_files_only=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        theirs = getattr(oracle, name).state_dict()
        ours = getattr(pipe, name).state_dict()
        assert theirs.keys() == ours.keys(), name
        for k in ours:
            assert torch.equal(theirs[k].float(), ours[k].float()), f"{name}.{k}"
    again = load_sdxl(folder)
    assert torch.equal(again.te2.text_projection.weight, sdxl.te2.text_projection.weight)
    assert text.tokenizer_source(WeightLocator(), folder) == folder


def test_sdxl_and_supir_files_swapped_say_which_is_which(tiny_models, sdxl):
    with pytest.raises(WrongWeights) as e:
        load_sdxl(tiny_models / V0Q)
    assert str(tiny_models / V0Q) in str(e.value) and "SUPIR" in str(e.value)
    with pytest.raises(WrongWeights) as e:
        load_supir(tiny_models / SDXL, sdxl.unet_arch, sdxl.vae_arch)
    assert str(tiny_models / SDXL) in str(e.value) and "SDXL UNet" in str(e.value)


def test_incomplete_supir_file_names_missing_and_unexpected_keys(tiny_models, sdxl, tmp_path):
    sd = load_file(str(tiny_models / V0F))
    gone = ["model.control_model.input_blocks.4.1.proj_in.weight", "model.diffusion_model.project_modules.7.attn.to_k.weight"]
    for k in gone:
        del sd[k]
    sd["model.control_model.zero_convs.0.weight"] = torch.zeros(1)
    bad = tmp_path / "SUPIR-v0Q_broken.safetensors"
    save_file(sd, str(bad))
    with pytest.raises(WrongWeights) as e:
        load_supir(bad, sdxl.unet_arch, sdxl.vae_arch)
    msg = str(e.value)
    assert str(bad) in msg and all(k in msg for k in gone) and "model.control_model.zero_convs.0.weight" in msg
    assert e.value.missing == sorted(gone) and e.value.unexpected == ["model.control_model.zero_convs.0.weight"]


def test_sdxl_tensor_of_wrong_shape_is_named(tiny_models, tmp_path):
    sd = load_file(str(tiny_models / SDXL))
    key = "model.diffusion_model.output_blocks.3.0.skip_connection.weight"
    sd[key] = torch.zeros(3, 3, 1, 1, dtype=torch.float16)
    bad = tmp_path / "finetune.safetensors"
    save_file(sd, str(bad))
    with pytest.raises(WrongWeights, match=r"output_blocks\.3\.0\.skip_connection\.weight \[3, 3, 1, 1\]"):
        load_sdxl(bad)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused_not_run(tiny_models, sdxl, tmp_path, capsys):
    bad = tmp_path / "SUPIR-v0Q.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"model.control_model.x": _Payload()}, f)
    with pytest.raises(WrongWeights, match="not loaded for safety|cannot be read"):
        load_supir(bad, sdxl.unet_arch, sdxl.vae_arch)
    assert "must never run" not in capsys.readouterr().out


def test_supir_on_a_mismatched_sdxl_is_refused(tiny_models, fx_sdxl_fixture_or_tiny):
    sdxl_other = fx_sdxl_fixture_or_tiny
    with pytest.raises(WrongWeights, match="does not match the SDXL model"):
        load_supir(tiny_models / V0Q, sdxl_other.unet_arch, sdxl_other.vae_arch)


@pytest.fixture
def fx_sdxl_fixture_or_tiny(sdxl):
    from dataclasses import replace

    return replace(sdxl, unet_arch=replace(sdxl.unet_arch, context_dim=sdxl.unet_arch.context_dim * 2))


def test_models_load_in_bf16_with_vae_apart(tiny_models):
    m = load_models(tiny_models / SDXL, tiny_models / V0Q, torch.bfloat16, torch.float32)
    assert next(m.unet.parameters()).dtype == torch.bfloat16 and next(m.control.parameters()).dtype == torch.bfloat16
    assert next(m.vae.parameters()).dtype == torch.float32 and next(m.denoise_encoder.parameters()).dtype == torch.float32


def test_tokenizer_from_open_clip_package_has_clip_ids():
    src = text.tokenizer_source(WeightLocator())
    assert src.name == text.BPE_NAME
    t1, t2 = text.load_tokenizers(src)
    ids = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" in OpenAI CLIP's vocabulary
    assert t1("a photo of a cat").input_ids == ids
    assert t2("a photo of a cat", padding="max_length", max_length=77).input_ids[:8] == ids + [0]
    assert t1("a photo of a cat", padding="max_length", max_length=77).input_ids[7] == 49407


def test_tokenizer_from_comfyui_install_and_missing_message(tmp_path, monkeypatch):
    from pipeline.config import Config

    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)  # as if open_clip were absent
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    loc = WeightLocator(Config(comfy_models=(models,), models_dir=tmp_path / "none"))
    with pytest.raises(MissingWeights) as e:
        text.tokenizer_source(loc)
    msg = str(e.value)
    assert "sdxl_tokenizer" in msg and "open_clip_torch" in msg and "sd1_tokenizer" in msg
    clip_tokenizer("<|endoftext|>").save_pretrained(str(tmp_path / "ComfyUI" / "comfy" / "sd1_tokenizer"))
    src = text.tokenizer_source(loc)
    assert src.name == "sd1_tokenizer"
    t1, t2 = text.load_tokenizers(src)
    assert t1.pad_token == "<|endoftext|>" and t2.pad_token == "!"
