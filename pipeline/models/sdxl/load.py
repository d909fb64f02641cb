"""Load any SDXL base model: one ``.safetensors``/``.ckpt`` in the original SGM layout
(``sd_xl_base_1.0.safetensors`` or a fine-tune such as Juggernaut XL) or a diffusers folder.

The result holds diffusers/transformers modules (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, ``CLIPTextModelWithProjection``) and the architecture read from the file, which the
SUPIR parts are checked against. Text encoders are optional here (the tiny parity checkpoints have
none); whoever encodes prompts asks for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from ...errors import WrongWeights
from ..meta import built, empty
from ..tensor_files import TensorSource, same, stream_into
from . import keymap as K
from .arch import (
    ArchError,
    ClipArch,
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

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

M = TypeVar("M", bound=nn.Module)

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


def build_unet(arch: UNetArch | dict[str, Any]) -> UNet2DConditionModel:
    """SDXL's UNet for an architecture (or a diffusers config: a folder's unet/config.json)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    config = unet_config(arch) if isinstance(arch, UNetArch) else arch
    return built(UNet2DConditionModel.from_config(config), UNet2DConditionModel)


def build_vae(arch: VaeArch | dict[str, Any]) -> AutoencoderKL:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    config = vae_config(arch) if isinstance(arch, VaeArch) else arch
    return built(AutoencoderKL.from_config(config), AutoencoderKL)


def build_clip(arch: ClipArch | CLIPTextConfig, role: str) -> CLIPTextModel | CLIPTextModelWithProjection:
    """CLIP-L (``role`` "l") or OpenCLIP bigG with its projection ("g")."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(**clip_config(arch, role)) if isinstance(arch, ClipArch) else arch
    return CLIPTextModel(config) if role == "l" else CLIPTextModelWithProjection(config)


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
    """A diffusers SDXL folder, each part built from its config.json and streamed in (tensor_files)."""
    from transformers import CLIPTextConfig

    subs = ("unet", "vae") + (("text_encoder", "text_encoder_2") if text_encoders else ())
    configs: dict[str, dict[str, Any]] = {}
    for sub in subs:
        config_json = path / sub / "config.json"
        if not config_json.is_file():
            raise WrongWeights(path, f"is not a diffusers SDXL folder: '{sub}/config.json' is missing.")
        try:
            configs[sub] = json.loads(config_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise WrongWeights(config_json, f"is not a readable config.json ({e}).") from None
    unet = _stream_part(empty(lambda: build_unet(configs["unet"])), path / "unet", dtype)
    vae = _stream_part(empty(lambda: build_vae(configs["vae"])), path / "vae", vae_dtype)
    te1 = te2 = None
    if text_encoders:
        te1 = _stream_part(empty(lambda: build_clip(CLIPTextConfig(**configs["text_encoder"]), "l")),
                           path / "text_encoder", dtype)
        te2 = _stream_part(empty(lambda: build_clip(CLIPTextConfig(**configs["text_encoder_2"]), "g")),
                           path / "text_encoder_2", dtype)
    v = vae.config  # the folder's config with diffusers' defaults filled in
    vae_arch = VaeArch(tuple(v["block_out_channels"]), v["layers_per_block"], v["latent_channels"], v["in_channels"])
    return SdxlModel(unet, vae, te1, te2, arch_from_diffusers(unet.config), vae_arch, path)


def _stream_part(module: M, folder: Path, dtype: torch.dtype) -> M:
    """One part of a diffusers folder in the module's own names; transformers < 5.6 saved CLIP's under a
    ``text_model.`` level this version's module lacks, so either spelling is read."""
    with TensorSource(folder) as src:
        keys = set(src.keys())
        plan = {k: (k if k in keys or f"text_model.{k}" not in keys else f"text_model.{k}", same)
                for k in module.state_dict()}
        return stream_into(module, src, plan, dtype=dtype, what=f"the diffusers SDXL part {folder.name}/")
