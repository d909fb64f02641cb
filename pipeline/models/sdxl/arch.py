"""SDXL architecture configs, built in code and read off a checkpoint's tensor shapes.

diffusers' single-file loader wants a config folder from the Hub; Dermis never downloads, so the
configs are made here. Every width, depth and count is read from the checkpoint itself (the shapes of
``input_blocks.*``, ``encoder.down.*``, the text encoders' layers), so the same code builds the real
2.6 B-parameter SDXL UNet, an SDXL fine-tune and the tiny test models. The two things a state dict
cannot tell are the attention head width (SDXL: 64) and the size of each micro-conditioning
embedding (SDXL: 256); both default to SDXL's values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]

SDXL_HEAD_DIM = 64
SDXL_ADD_TIME_DIM = 256
SDXL_SCALE_FACTOR = 0.13025
# Live previews: RGB in [-1, 1] = latent . factors + bias, for SDXL's scaled latent (the sampler's x0).
# ComfyUI's fitted projection (comfy/latent_formats.py, class SDXL: latent_rgb_factors and
# latent_rgb_factors_bias), the same numbers its "latent2rgb" previews use for every SDXL model.
SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341),
                   (-0.2533, -0.0042, 0.1068),
                   (0.1076, 0.1111, -0.0362),
                   (-0.3165, -0.2492, -0.2188))
SDXL_LATENT_RGB_BIAS = (0.1084, -0.0175, -0.0011)


class ArchError(ValueError):
    """The tensors do not describe an SDXL-like network (turned into WrongWeights by the loaders)."""


@dataclass(frozen=True)
class UNetArch:
    """The encoder half (and by symmetry the decoder) of an SGM ``UNetModel`` like SDXL's."""

    in_channels: int
    out_channels: int
    widths: tuple[int, ...]  # channels per level (SDXL 320, 640, 1280)
    layers: int  # res blocks per level in the encoder (SDXL 2)
    attention: tuple[bool, ...]  # cross-attention transformer per level (SDXL F, T, T)
    depth: tuple[int, ...]  # transformer blocks per level (SDXL 1, 2, 10; 1 where unused)
    context_dim: int  # SDXL 2048 = 768 (CLIP-L) + 1280 (bigG)
    adm_in_channels: int  # SDXL 2816 = 1280 pooled + 6 x 256 size embeddings
    head_dim: int = SDXL_HEAD_DIM
    add_time_dim: int = SDXL_ADD_TIME_DIM
    linear_projection: bool = True

    def with_(self, **changes: Any) -> UNetArch:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class VaeArch:
    widths: tuple[int, ...]  # SDXL 128, 256, 512, 512
    layers: int  # SDXL 2
    latent_channels: int  # SDXL 4
    in_channels: int = 3


@dataclass(frozen=True)
class ClipArch:
    vocab_size: int
    width: int
    layers: int
    intermediate: int
    positions: int
    projection_dim: int = 0  # 0: no projection (CLIP-L role)


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def _need(shapes: Shapes, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise ArchError(f"expected tensor '{key}' is not there")
    return shapes[key]


def infer_unet(shapes: Shapes, *, head_dim: int | None = None, add_time_dim: int | None = None) -> UNetArch:
    """UNetArch from SGM keys (``input_blocks.*``, ``middle_block.*``, ``label_emb.*``, ...) with
    the ``model.diffusion_model.`` / ``model.control_model.`` prefix already removed."""
    conv_in = _need(shapes, "input_blocks.0.0.weight")
    widths: list[int] = []
    attention: list[bool] = []
    depth: list[int] = []
    per_level: list[int] = [0]
    for i in _indices(shapes, r"input_blocks\.(\d+)\.")[1:]:
        if f"input_blocks.{i}.0.op.weight" in shapes:  # a downsampler closes the level
            per_level.append(0)
            continue
        width = _need(shapes, f"input_blocks.{i}.0.out_layers.3.weight")[0]
        if per_level[-1] == 0:
            widths.append(width)
            has_attn = any(k.startswith(f"input_blocks.{i}.1.") for k in shapes)
            attention.append(has_attn)
            blocks = _indices(shapes, rf"input_blocks\.{i}\.1\.transformer_blocks\.(\d+)\.")
            depth.append(len(blocks) if has_attn else 1)
        per_level[-1] += 1
    if not widths or len(set(per_level)) != 1 or len(per_level) != len(widths):
        raise ArchError(f"input blocks do not form equal levels (res blocks per level: {per_level})")
    mid = _indices(shapes, r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    if attention[-1] and len(mid) != depth[-1]:
        raise ArchError(f"middle block depth {len(mid)} differs from the last level's {depth[-1]}")
    to_k = next((s for k, s in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((s for k, s in shapes.items() if k.endswith(".proj_in.weight")), (0, 0))
    adm = _need(shapes, "label_emb.0.0.weight")[1]
    arch = UNetArch(
        in_channels=conv_in[1],
        out_channels=shapes["out.2.weight"][0] if "out.2.weight" in shapes else conv_in[1],
        widths=tuple(widths),
        layers=per_level[0],
        attention=tuple(attention),
        depth=tuple(depth),
        context_dim=to_k[1] if to_k else 0,
        adm_in_channels=adm,
        linear_projection=len(proj_in) == 2,
    )
    if add_time_dim is None and adm == 2816:
        add_time_dim = SDXL_ADD_TIME_DIM
    return arch.with_(head_dim=head_dim, add_time_dim=add_time_dim)


def unet_config(a: UNetArch) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel`` config for an SGM UNet (SDXL: the stabilityai config)."""
    if a.widths[0] % 32:
        raise ArchError(f"width {a.widths[0]} is not a multiple of 32 (SGM uses 32 norm groups)")
    return {
        "sample_size": 128,
        "in_channels": a.in_channels,
        "out_channels": a.out_channels,
        "layers_per_block": a.layers,
        "block_out_channels": list(a.widths),
        "down_block_types": ["CrossAttnDownBlock2D" if t else "DownBlock2D" for t in a.attention],
        "up_block_types": ["CrossAttnUpBlock2D" if t else "UpBlock2D" for t in reversed(a.attention)],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        # diffusers' SDXL quirk: "attention_head_dim" holds the NUMBER of heads per level
        "attention_head_dim": [max(1, w // a.head_dim) for w in a.widths],
        "transformer_layers_per_block": list(a.depth),
        "cross_attention_dim": a.context_dim,
        "use_linear_projection": a.linear_projection,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": a.add_time_dim,
        "projection_class_embeddings_input_dim": a.adm_in_channels,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "act_fn": "silu",
        "upcast_attention": False,
    }


def infer_vae(shapes: Shapes, encoder: str = "encoder") -> VaeArch:
    """VaeArch from LDM first-stage keys (prefix ``first_stage_model.`` removed); ``encoder`` names
    the encoder to read (``denoise_encoder`` for SUPIR's)."""
    conv_in = _need(shapes, f"{encoder}.conv_in.weight")
    levels = _indices(shapes, rf"{encoder}\.down\.(\d+)\.")
    widths = tuple(_need(shapes, f"{encoder}.down.{i}.block.0.conv2.weight")[0] for i in levels)
    layers = len(_indices(shapes, rf"{encoder}\.down\.0\.block\.(\d+)\."))
    z = _need(shapes, f"{encoder}.conv_out.weight")[0] // 2  # double_z: mean and log-variance
    if not widths or any(w % 32 for w in widths):
        raise ArchError(f"VAE widths {widths} are not multiples of 32")
    return VaeArch(widths=widths, layers=layers, latent_channels=z, in_channels=conv_in[1])


def vae_config(a: VaeArch) -> dict[str, Any]:
    n = len(a.widths)
    return {
        "in_channels": a.in_channels,
        "out_channels": a.in_channels,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": list(a.widths),
        "layers_per_block": a.layers,
        "act_fn": "silu",
        "latent_channels": a.latent_channels,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": SDXL_SCALE_FACTOR,
        "force_upcast": True,
        "mid_block_add_attention": True,
        "use_quant_conv": True,
        "use_post_quant_conv": True,
    }


def infer_clip_l(shapes: Shapes) -> ClipArch:
    """CLIP-L text encoder from ``text_model.*`` keys (prefix ``...embedders.0.transformer.`` removed)."""
    tok = _need(shapes, "text_model.embeddings.token_embedding.weight")
    layers = _indices(shapes, r"text_model\.encoder\.layers\.(\d+)\.")
    fc1 = _need(shapes, "text_model.encoder.layers.0.mlp.fc1.weight")
    pos = _need(shapes, "text_model.embeddings.position_embedding.weight")
    return ClipArch(tok[0], tok[1], len(layers), fc1[0], pos[0])


def infer_clip_g(shapes: Shapes) -> ClipArch:
    """OpenCLIP bigG text tower from ``model.*`` keys (prefix ``...embedders.1.`` removed)."""
    tok = _need(shapes, "model.token_embedding.weight")
    layers = _indices(shapes, r"model\.transformer\.resblocks\.(\d+)\.")
    fc = _need(shapes, "model.transformer.resblocks.0.mlp.c_fc.weight")
    pos = _need(shapes, "model.positional_embedding")
    proj = _need(shapes, "model.text_projection")
    return ClipArch(tok[0], tok[1], len(layers), fc[0], pos[0], projection_dim=proj[1])


def clip_config(a: ClipArch, role: str) -> dict[str, Any]:
    """transformers ``CLIPTextConfig`` kwargs. ``role`` "l" (CLIP ViT-L/14: quick_gelu) or "g"
    (OpenCLIP ViT-bigG/14: gelu). Heads are 64 wide in both; the last two ids are <bos>, <eos>."""
    if a.width % 64:
        raise ArchError(f"text encoder width {a.width} is not a multiple of the 64-wide heads")
    return {
        "vocab_size": a.vocab_size,
        "hidden_size": a.width,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.width // 64,
        "max_position_embeddings": a.positions,
        "hidden_act": "quick_gelu" if role == "l" else "gelu",
        "projection_dim": a.projection_dim or a.width,
        "layer_norm_eps": 1e-5,
        "bos_token_id": a.vocab_size - 2,
        "eos_token_id": a.vocab_size - 1,
        "pad_token_id": 1 if role == "l" else 0,
    }
