"""Tiny random SDXL checkpoints in the real on-disk layout, laid out like a ComfyUI models folder:

- ``checkpoints/sd_xl_base_1.0_tiny-random.safetensors``: SGM single file (``model.diffusion_model.*``,
  ``first_stage_model.*``, ``conditioner.embedders.0.transformer.text_model.*`` = CLIP-L,
  ``conditioner.embedders.1.model.*`` = OpenCLIP bigG with fused q/k/v), fp16 like the release. The
  two text encoders have different widths (64 and 128): with equal widths diffusers' single-file
  converter silently swaps them, and a test could not tell.
- ``checkpoints/tiny-random-SDXL-Lightning.safetensors``: another one, for the Lightning preset.
- ``diffusers/sdxl-tokenizer-tiny/tokenizer{,_2}/``: a byte-level CLIP tokenizer (514 tokens, no
  merges), where a diffusers SDXL folder keeps its tokenizers.
Names never collide with the real files, so the builder cannot overwrite a user's download. SUPIR's
files (written on top of these by ``pipeline.models.supir.tiny``) reuse the same architectures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..tiny import clip_tokenizer, half
from . import keymap as K
from .arch import ClipArch, UNetArch, VaeArch
from .load import UNET_PREFIX, VAE_PREFIX, build_clip, build_unet, build_vae

TE1 = ClipArch(vocab_size=514, width=64, layers=2, intermediate=128, positions=77)
TE2 = ClipArch(vocab_size=514, width=128, layers=2, intermediate=256, positions=77, projection_dim=64)
UNET = UNetArch(in_channels=4, out_channels=4, widths=(32, 64, 64), layers=2, attention=(False, True, True),
                depth=(1, 1, 1), context_dim=TE1.width + TE2.width, adm_in_channels=TE2.projection_dim + 6 * 8,
                head_dim=64, add_time_dim=8)
VAE = VaeArch(widths=(32, 32, 64, 64), layers=1, latent_channels=4)


def perturb_zeros(module: torch.nn.Module) -> None:
    """Zero-initialised layers get small random values so every path contributes (as the fixtures do)."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.02)


def sdxl_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    unet, vae = build_unet(UNET), build_vae(VAE)
    te1, te2 = build_clip(TE1, "l"), build_clip(TE2, "g")
    perturb_zeros(unet)
    out = K.to_file(unet.state_dict(), K.unet_keymap(unet.state_dict().keys(), UNET, UNET_PREFIX))
    out |= K.to_file(vae.state_dict(), K.vae_keymap(vae.state_dict().keys(), len(VAE.widths), VAE_PREFIX))
    out |= K.to_file(te1.state_dict(), K.clip_l_keymap(te1.state_dict().keys()))
    out |= K.to_file(te2.state_dict(), K.clip_g_keymap(te2.state_dict().keys()))
    out[K.CLIP_G_PREFIX + "model.logit_scale"] = torch.tensor(4.6052)  # in every real SDXL file, unused
    return out


def build_sdxl(root: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    ckpts = root / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    paths = {
        "sdxl": ckpts / "sd_xl_base_1.0_tiny-random.safetensors",
        "sdxl_lightning": ckpts / "tiny-random-SDXL-Lightning.safetensors",
    }
    save_file(half(sdxl_state(10)), str(paths["sdxl"]))
    save_file(half(sdxl_state(11)), str(paths["sdxl_lightning"]))
    tok = root / "diffusers" / "sdxl-tokenizer-tiny"
    clip_tokenizer("<|endoftext|>").save_pretrained(str(tok / "tokenizer"))
    clip_tokenizer("!").save_pretrained(str(tok / "tokenizer_2"))
    paths["sdxl_tokenizer"] = tok
    return paths
