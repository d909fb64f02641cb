"""Tiny random SUPIR files in the real on-disk layouts, on top of the tiny SDXL ones
(``pipeline.models.sdxl.tiny``), laid out like a ComfyUI models folder:

- ``checkpoints/SUPIR-v0Q_tiny-random.ckpt``: pickled fp32 dict like SUPIR-v0Q.ckpt (with the stray
  ``mask_LQ``); ``checkpoints/SUPIR-v0F_tiny-random_fp16.safetensors`` like Kijai's pruned files.
Names never collide with the real files, so the builder cannot overwrite a user's download.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..sdxl import keymap as K
from ..sdxl.arch import unet_config
from ..sdxl.tiny import UNET, VAE, build_sdxl, perturb_zeros
from ..tiny import half
from .connectors import build_connectors
from .control import ControlEncoder
from .load import CONTROL_PREFIX, DENOISE_PREFIX, PM_PREFIX, build_denoise_encoder

NHIDDEN = 32


def supir_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    control = ControlEncoder(unet_config(UNET))
    connectors = build_connectors(UNET, NHIDDEN)
    denoise = build_denoise_encoder(VAE)
    for m in (control, connectors):
        perturb_zeros(m)
    out = K.to_file(control.state_dict(), K.unet_keymap(control.state_dict().keys(), UNET, CONTROL_PREFIX))
    out |= K.to_file(connectors.state_dict(), K.KeyMap(PM_PREFIX, {k: (k, "") for k in connectors.state_dict()}))
    out |= K.to_file(denoise.state_dict(), K.encoder_keymap(denoise.state_dict().keys(), len(VAE.widths),
                                                            DENOISE_PREFIX))
    out[CONTROL_PREFIX + "mask_LQ"] = torch.zeros(1, 4, 64, 64)  # training leftover, as in SUPIR-v0Q.ckpt
    return out



def build_supir(root: Path) -> dict[str, Path]:
    """The tiny SDXL checkpoints and tokenizer (SUPIR needs them), then both SUPIR files."""
    from safetensors.torch import save_file

    paths = build_sdxl(root)
    ckpts = root / "checkpoints"
    paths["supir_v0q"] = ckpts / "SUPIR-v0Q_tiny-random.ckpt"
    paths["supir_v0f"] = ckpts / "SUPIR-v0F_tiny-random_fp16.safetensors"
    torch.save(supir_state(12), paths["supir_v0q"])
    save_file(half(supir_state(13)), str(paths["supir_v0f"]))
    return paths
