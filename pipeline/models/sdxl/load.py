"""Load any SDXL base model: one ``.safetensors``/``.ckpt`` in the original SGM layout
(``sd_xl_base_1.0.safetensors`` or a fine-tune such as Juggernaut XL) or a diffusers folder.

The result holds diffusers/transformers modules (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, ``CLIPTextModelWithProjection``) and the architecture read from the file, which the
SUPIR parts are checked against. Text encoders are optional here (the tiny parity checkpoints have
none); whoever encodes prompts asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import WrongWeights
from ..tensor_files import TensorSource, empty
from . import keymap as K
from .arch import (
    ArchError,
    UNetArch,
    VaeArch,
    clip_config,
    infer_clip_g,
    infer_clip_l,
    infer_unet,
    infer_vae,
    unet_config,
    vae_config,
)
from .keymap import assign, verify

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


@dataclass
class SdxlModel:
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL (SDXL's: its encoder, decoder, quant_conv, post_quant_conv)
    te1: Any | None  # transformers CLIPTextModel (CLIP ViT-L/14)
    te2: Any | None  # transformers CLIPTextModelWithProjection (OpenCLIP ViT-bigG/14)
    unet_arch: UNetArch
    vae_arch: VaeArch
    path: Path


def build_unet(arch: UNetArch):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config(unet_config(arch))


def build_vae(arch: VaeArch):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(vae_config(arch))


def build_clip(arch, role: str):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModel if role == "l" else CLIPTextModelWithProjection
    return cls(CLIPTextConfig(**clip_config(arch, role)))


def sdxl_parts(shapes: dict[str, tuple[int, ...]], path: Path, *, head_dim: int | None = None,
               add_time_dim: int | None = None) -> dict[str, Any]:
    """Architectures, empty modules and key maps for everything an SDXL file holds (no tensors read).

    Used by the loader and by the full-size manifest checks alike."""
    def sub(prefix: str) -> dict[str, tuple[int, ...]]:
        return {k[len(prefix):]: s for k, s in shapes.items() if k.startswith(prefix)}

    unet_shapes = sub(UNET_PREFIX)
    if not unet_shapes:
        hint = (" It holds SUPIR's control encoder: a SUPIR file only adds to SDXL; give it as the SUPIR "
                "model and pick an SDXL checkpoint as well." if any(k.startswith("model.control_model.") for k in shapes)
                else "")
        raise WrongWeights(path, f"is not an SDXL checkpoint: it has no '{UNET_PREFIX}*' UNet tensors.{hint}")
    te1_shapes, te2_shapes = sub(K.CLIP_L_PREFIX), sub(K.CLIP_G_PREFIX)
    try:
        l_arch = infer_clip_l(te1_shapes) if te1_shapes else None
        g_arch = infer_clip_g(te2_shapes) if te2_shapes else None
        if add_time_dim is None and g_arch is not None:
            adm = unet_shapes.get("label_emb.0.0.weight", (0, 0))[1]
            add_time_dim = (adm - g_arch.projection_dim) // 6 or None
        unet_arch = infer_unet({k: s for k, s in unet_shapes.items() if not k.startswith("project_modules.")},
                               head_dim=head_dim, add_time_dim=add_time_dim)
        vae_arch = infer_vae(sub(VAE_PREFIX))
    except ArchError as e:
        raise WrongWeights(path, f"does not look like an SDXL checkpoint ({e}).") from None
    unet, vae = empty(lambda: build_unet(unet_arch)), empty(lambda: build_vae(vae_arch))
    parts: dict[str, Any] = {
        "unet_arch": unet_arch, "vae_arch": vae_arch,
        "unet": (K.unet_keymap(unet.state_dict().keys(), unet_arch, UNET_PREFIX,
                               ignore=[UNET_PREFIX + k for k in unet_shapes if k.startswith("project_modules.")]),
                 unet),
        "vae": (K.vae_keymap(vae.state_dict().keys(), len(vae_arch.widths), VAE_PREFIX), vae),
    }
    if l_arch is not None:
        te1 = empty(lambda: build_clip(l_arch, "l"))
        parts["te1"] = (K.clip_l_keymap(te1.state_dict().keys()), te1)
    if g_arch is not None:
        te2 = empty(lambda: build_clip(g_arch, "g"))
        parts["te2"] = (K.clip_g_keymap(te2.state_dict().keys()), te2)
    if l_arch and g_arch and l_arch.width + g_arch.width != unet_arch.context_dim:
        raise WrongWeights(path, f"text encoders ({l_arch.width} + {g_arch.width} wide) do not fit the "
                                 f"UNet's {unet_arch.context_dim}-wide cross-attention.")
    return parts


def load_sdxl(path: str | Path, dtype: torch.dtype = torch.float32, *, vae_dtype: torch.dtype | None = None,
              head_dim: int | None = None, add_time_dim: int | None = None,
              text_encoders: bool = True) -> SdxlModel:
    """Load an SDXL checkpoint file or diffusers folder into diffusers modules on the CPU (UNet and
    text encoders in ``dtype``, the VAE in ``vae_dtype``, default the same)."""
    path = Path(path)
    vae_dtype = vae_dtype or dtype
    if path.is_dir():
        return _load_folder(path, dtype, vae_dtype, text_encoders)
    with TensorSource.open(path) as ckpt:
        shapes = ckpt.shapes()
        parts = sdxl_parts(shapes, path, head_dim=head_dim, add_time_dim=add_time_dim)
        names = ["unet", "vae"] + ([n for n in ("te1", "te2") if n in parts] if text_encoders else [])
        verify(path, shapes, [parts[n] for n in names], "SDXL")
        loaded = {n: assign(parts[n][1], ckpt, parts[n][0], vae_dtype if n == "vae" else dtype, f"SDXL's {n}")
                  for n in names}
    return SdxlModel(loaded["unet"], loaded["vae"], loaded.get("te1"), loaded.get("te2"),
                     parts["unet_arch"], parts["vae_arch"], path)


def arch_from_diffusers(unet_cfg: Any) -> UNetArch:
    """UNetArch of a diffusers UNet2DConditionModel config (diffusers folders)."""
    widths = tuple(unet_cfg["block_out_channels"])
    heads = unet_cfg["attention_head_dim"]
    heads = heads if isinstance(heads, (list, tuple)) else [heads] * len(widths)
    depth = unet_cfg["transformer_layers_per_block"]
    depth = depth if isinstance(depth, (list, tuple)) else [depth] * len(widths)
    return UNetArch(
        in_channels=unet_cfg["in_channels"], out_channels=unet_cfg["out_channels"], widths=widths,
        layers=unet_cfg["layers_per_block"],
        attention=tuple(t.startswith("CrossAttn") for t in unet_cfg["down_block_types"]),
        depth=tuple(depth), context_dim=unet_cfg["cross_attention_dim"],
        adm_in_channels=unet_cfg["projection_class_embeddings_input_dim"],
        head_dim=widths[-1] // heads[-1], add_time_dim=unet_cfg["addition_time_embed_dim"],
        linear_projection=bool(unet_cfg["use_linear_projection"]),
    )


def _load_folder(path: Path, dtype: torch.dtype, vae_dtype: torch.dtype, text_encoders: bool) -> SdxlModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    for sub in ("unet", "vae") + (("text_encoder", "text_encoder_2") if text_encoders else ()):
        if not (path / sub / "config.json").is_file():
            raise WrongWeights(path, f"is not a diffusers SDXL folder: '{sub}/config.json' is missing.")
    kw = {"local_files_only": True, "dtype": dtype}
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **{**kw, "dtype": vae_dtype})
        te1 = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw) if text_encoders else None
        te2 = (CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", **kw)
               if text_encoders else None)
    except (OSError, ValueError, RuntimeError) as e:
        raise WrongWeights(path, f"cannot be loaded as a diffusers SDXL folder ({e}).") from None
    vcfg = vae.config
    vae_arch = VaeArch(tuple(vcfg.block_out_channels), vcfg.layers_per_block, vcfg.latent_channels,
                       vcfg.in_channels)
    mods = [m.eval().requires_grad_(False) if m is not None else None for m in (unet, vae, te1, te2)]
    return SdxlModel(*mods, arch_from_diffusers(unet.config), vae_arch, path)
