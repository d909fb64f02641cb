"""Load SUPIR-v0Q / SUPIR-v0F (``.ckpt`` pickles read with ``weights_only=True``, or ``.safetensors``;
fp32 or the pruned fp16 copies) on top of an SDXL model.

A SUPIR file holds only SUPIR's additions (Fanghua-Yu/SUPIR#53): ``model.control_model.*`` (the
control encoder in SGM names, plus a stray training buffer ``mask_LQ`` that is dropped),
``model.diffusion_model.project_modules.*`` (the 12 connectors) and
``first_stage_model.denoise_encoder.*`` (the degradation-robust VAE encoder, used with SDXL's
``quant_conv``). Every tensor of the file must be used; anything else is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import WrongWeights
from ..meta import empty
from ..sdxl import keymap as K
from ..sdxl.arch import ArchError, UNetArch, VaeArch, infer_unet, unet_config
from ..sdxl.keymap import assign, verify
from ..sdxl.load import build_vae
from ..tensor_files import TensorSource
from .connectors import NHIDDEN, build_connectors
from .control import ControlEncoder

CONTROL_PREFIX = "model.control_model."
PM_PREFIX = "model.diffusion_model.project_modules."
DENOISE_PREFIX = "first_stage_model.denoise_encoder."
IGNORED = frozenset({CONTROL_PREFIX + "mask_LQ"})  # a training leftover in the released files


@dataclass
class SupirParts:
    control: ControlEncoder
    connectors: nn.ModuleList
    denoise_encoder: nn.Module  # diffusers Encoder, same topology as SDXL's VAE encoder
    path: Path


def build_denoise_encoder(vae_arch: VaeArch) -> nn.Module:
    """A diffusers VAE encoder of SDXL's architecture (the rest of the donor VAE is dropped)."""
    return build_vae(vae_arch).encoder


def supir_parts(shapes: dict[str, tuple[int, ...]], path: Path, unet_arch: UNetArch,
                vae_arch: VaeArch) -> dict[str, Any]:
    """Empty modules + key maps for a SUPIR file on top of an SDXL architecture (no tensors read)."""
    control_shapes = {k[len(CONTROL_PREFIX):]: s for k, s in shapes.items()
                      if k.startswith(CONTROL_PREFIX) and k not in IGNORED}
    if not control_shapes:
        hint = (" It holds an SDXL UNet: give it as the SDXL model and pick SUPIR-v0Q or SUPIR-v0F as "
                "the SUPIR model." if any(k.startswith("model.diffusion_model.input_blocks") for k in shapes) else "")
        raise WrongWeights(path, f"is not a SUPIR checkpoint: it has no '{CONTROL_PREFIX}*' tensors.{hint}")
    try:
        arch = infer_unet({k: s for k, s in control_shapes.items() if not k.startswith("input_hint_block.")},
                          head_dim=unet_arch.head_dim, add_time_dim=unet_arch.add_time_dim)
    except ArchError as e:
        raise WrongWeights(path, f"its control encoder is not an SDXL encoder copy ({e}).") from None
    # The control encoder is a copy of SDXL's encoder half: build it from SDXL's architecture, so a
    # damaged file is reported key by key (below) rather than as a different network.
    core = ("widths", "layers", "context_dim", "adm_in_channels", "in_channels")
    if any(getattr(arch, f) != getattr(unet_arch, f) for f in core):
        raise WrongWeights(path, f"its control encoder ({arch.widths}, context {arch.context_dim}) does not "
                                 f"match the SDXL model ({unet_arch.widths}, context {unet_arch.context_dim}); "
                                 "SUPIR-v0 needs an SDXL base model or fine-tune.")
    nhidden = shapes.get(PM_PREFIX + "0.mlp_shared.0.weight", (NHIDDEN,))[0]
    arch = unet_arch
    control = empty(lambda: ControlEncoder(unet_config(arch)))
    connectors = empty(lambda: build_connectors(unet_arch, nhidden))
    denoise = empty(lambda: build_denoise_encoder(vae_arch))
    return {
        "control": (K.unet_keymap(control.state_dict().keys(), arch, CONTROL_PREFIX), control),
        "connectors": (K.KeyMap(PM_PREFIX, {k: (k, "") for k in connectors.state_dict()}), connectors),
        "denoise_encoder": (K.encoder_keymap(denoise.state_dict().keys(), len(vae_arch.widths),
                                             DENOISE_PREFIX), denoise),
    }


def load_supir(path: str | Path, unet_arch: UNetArch, vae_arch: VaeArch,
               dtype: torch.dtype = torch.float32, vae_dtype: torch.dtype | None = None) -> SupirParts:
    path = Path(path)
    with TensorSource.open(path) as ckpt:
        shapes = ckpt.shapes()
        parts = supir_parts(shapes, path, unet_arch, vae_arch)
        verify(path, shapes, list(parts.values()), "SUPIR-v0", whole_file=True, ignore=IGNORED)
        loaded = {n: assign(m, ckpt, km, (vae_dtype or dtype) if n == "denoise_encoder" else dtype, f"SUPIR's {n}")
                  for n, (km, m) in parts.items()}
    return SupirParts(loaded["control"], loaded["connectors"], loaded["denoise_encoder"], path)
