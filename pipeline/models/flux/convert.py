"""FLUX.1 checkpoint layouts: architecture configs from tensor shapes and the BFL→diffusers key plan.

A transformer file comes in two layouts: BFL's reference one (``flux1-dev.safetensors``,
community SRPO repacks: ``double_blocks.N.img_attn.qkv``…) and diffusers' one (FLUX.1-dev
``transformer/`` shards, tencent/SRPO ``diffusion_pytorch_model.safetensors``). Neither carries a
config, and the hub is never asked for one, so the architecture is read from tensor shapes. diffusers
0.42's own converter hard-codes a 3072 width and a 4.0 MLP ratio; the plan here takes every size
from the shapes, so it converts the 12B model and a tiny test model alike.

Ops (verified against diffusers' converter at full size, ../shared/fixtures/flux/README.md):
``copy``; ``chunk3[j]`` (img/txt ``qkv`` → q, k, v); ``split[H,H,H,mlp][j]`` (single-block
``linear1`` → q, k, v, proj_mlp); ``swap_halves`` (BFL's final modulation is [shift; scale],
diffusers wants [scale; shift]).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch

from ...errors import WrongWeights
from ..tensor_files import check_tensors

Layout = Literal["bfl", "diffusers"]
Shapes = Mapping[str, Sequence[int]]
Op = Callable[[torch.Tensor], torch.Tensor]

# FLUX.1-dev's transformer (black-forest-labs/FLUX.1-dev transformer/config.json); SRPO is a fine-tune
# of it with the same shapes. Used as is when the shapes say "full size".
FLUX_DEV_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1, in_channels=64, out_channels=None, num_layers=19, num_single_layers=38,
    attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
    pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)
# The FLUX.1 autoencoder (ae.safetensors): BFL's AutoEncoder hard-codes GroupNorm(32); the latent
# scale and shift are not in the file either (flux.util.configs["flux-dev"].ae_params).
VAE_SCALING, VAE_SHIFT, VAE_GROUPS = 0.3611, 0.1159, 32

BFL_MARKER = "double_blocks.0.img_attn.qkv.weight"
DIFFUSERS_MARKER = "transformer_blocks.0.attn.to_q.weight"
# ComfyUI all-in-one checkpoints and some repacks nest the transformer under a prefix
TRANSFORMER_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.", "transformer.", "model.")
BFL_VAE_MARKER = "encoder.down.0.block.0.conv1.weight"
DIFFUSERS_VAE_MARKER = "encoder.down_blocks.0.resnets.0.conv1.weight"
VAE_PREFIXES = ("", "first_stage_model.", "vae.", "ae.")


def transformer_layout(keys: Collection[str]) -> Layout | None:
    return _layout(keys, BFL_MARKER, DIFFUSERS_MARKER)


def _layout(keys: Collection[str], bfl_marker: str, diffusers_marker: str) -> Layout | None:
    if bfl_marker in keys:
        return "bfl"
    if diffusers_marker in keys:
        return "diffusers"
    return None


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE split of one head over (index, row, column): FLUX.1's (16, 56, 56) for 128, same proportions
    otherwise. Not stored in any file; a config.json next to the weights overrides it."""
    if head_dim == 128:
        return (16, 56, 56)
    first = max(2, (head_dim // 8) // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    return (head_dim - 2 * rest, rest, rest)


def _count(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def transformer_config(shapes: Shapes, layout: Layout, origin: Path) -> dict[str, Any]:
    """A FluxTransformer2DModel config read from tensor shapes (FLUX.1-dev's exactly at full size)."""
    try:
        if layout == "bfl":
            hidden, in_ch = shapes["img_in.weight"]
            head_dim = shapes["double_blocks.0.img_attn.norm.key_norm.scale"][0]
            joint = shapes["txt_in.weight"][1]
            pooled = shapes["vector_in.in_layer.weight"][1]
            out_ch = shapes["final_layer.linear.weight"][0]
            guidance = "guidance_in.in_layer.weight" in shapes
            layers, single = _count(shapes, r"double_blocks\.(\d+)\."), _count(shapes, r"single_blocks\.(\d+)\.")
            mlp = shapes["single_blocks.0.linear1.weight"][0] - 3 * hidden if single else 4 * hidden
        else:
            hidden, in_ch = shapes["x_embedder.weight"]
            head_dim = shapes["transformer_blocks.0.attn.norm_k.weight"][0]
            joint = shapes["context_embedder.weight"][1]
            pooled = shapes["time_text_embed.text_embedder.linear_1.weight"][1]
            out_ch = shapes["proj_out.weight"][0]
            guidance = "time_text_embed.guidance_embedder.linear_1.weight" in shapes
            layers = _count(shapes, r"transformer_blocks\.(\d+)\.")
            single = _count(shapes, r"single_transformer_blocks\.(\d+)\.")
            mlp = shapes["transformer_blocks.0.ff.net.0.proj.weight"][0]
    except (KeyError, ValueError, IndexError) as e:
        raise WrongWeights(origin, f"is not a complete FLUX.1 transformer (no tensor {e}).") from None
    if not guidance:
        raise WrongWeights(origin, "has no guidance embedding: it is FLUX.1-schnell-like, not a FLUX.1-dev "
                                   "(SRPO) transformer, which this stage's guidance setting needs.")
    if hidden % head_dim or mlp != 4 * hidden:
        raise WrongWeights(origin, f"has a FLUX-like layout with widths diffusers' FluxTransformer2DModel "
                                   f"cannot hold (hidden {hidden}, head {head_dim}, mlp {mlp}).")
    return dict(
        patch_size=1, in_channels=in_ch, out_channels=None if out_ch == in_ch else out_ch,
        num_layers=layers, num_single_layers=single, attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim, joint_attention_dim=joint, pooled_projection_dim=pooled,
        guidance_embeds=guidance, axes_dims_rope=rope_axes(head_dim),
    )


# ------------------------------------------------------------------------------- transformer plan


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t


def _chunk3(j: int, t: torch.Tensor) -> torch.Tensor:
    return t.chunk(3, dim=0)[j]


def _split(sizes: tuple[int, ...], j: int, t: torch.Tensor) -> torch.Tensor:
    return t.split(list(sizes), dim=0)[j]


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


_TOP = {  # diffusers name -> BFL name, weight and bias alike
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
}
_DOUBLE_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
               "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_DOUBLE_NORMS = {"attn.norm_q.weight": "img_attn.norm.query_norm.scale",
                 "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
                 "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
                 "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale"}
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}


def bfl_transformer_plan(shapes: Shapes, config: Mapping[str, Any]) -> dict[str, tuple[str, Op]]:
    """diffusers key -> (BFL key, op) for a transformer with ``config`` (from ``transformer_config``)."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    plan: dict[str, tuple[str, Op]] = {}
    for wb in ("weight", "bias"):
        for d, b in _TOP.items():
            plan[f"{d}.{wb}"] = (f"{b}.{wb}", _copy)
        plan[f"norm_out.linear.{wb}"] = (f"final_layer.adaLN_modulation.1.{wb}", _swap_halves)
        for i in range(config["num_layers"]):
            for d, b in _DOUBLE.items():
                plan[f"transformer_blocks.{i}.{d}.{wb}"] = (f"double_blocks.{i}.{b}.{wb}", _copy)
            for b, outs in _DOUBLE_QKV.items():
                for j, d in enumerate(outs):
                    plan[f"transformer_blocks.{i}.{d}.{wb}"] = (f"double_blocks.{i}.{b}.{wb}", partial(_chunk3, j))
        for i in range(config["num_single_layers"]):
            src = f"single_blocks.{i}.linear1.{wb}"
            mlp = shapes[src][0] - 3 * hidden if src in shapes else 4 * hidden
            sizes = (hidden, hidden, hidden, mlp)
            for j, d in enumerate(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")):
                plan[f"single_transformer_blocks.{i}.{d}.{wb}"] = (src, partial(_split, sizes, j))
            for d, b in _SINGLE.items():
                plan[f"single_transformer_blocks.{i}.{d}.{wb}"] = (f"single_blocks.{i}.{b}.{wb}", _copy)
    for i in range(config["num_layers"]):
        for d, b in _DOUBLE_NORMS.items():
            plan[f"transformer_blocks.{i}.{d}"] = (f"double_blocks.{i}.{b}", _copy)
    for i in range(config["num_single_layers"]):
        for d, b in _SINGLE_NORMS.items():
            plan[f"single_transformer_blocks.{i}.{d}"] = (f"single_blocks.{i}.{b}", _copy)
    if not config.get("guidance_embeds", True):
        plan = {k: v for k, v in plan.items() if "guidance_embedder" not in k}
    return plan


def identity_plan(keys: Collection[str]) -> dict[str, tuple[str, Op]]:
    return {k: (k, _copy) for k in keys}


def plan_sources(origin: Path, plan: Mapping[str, tuple[str, Op]], available: Collection[str]) -> None:
    """Every source the plan reads must exist, and every tensor in the file must be used."""
    check_tensors(origin, set(available), {src for src, _ in plan.values()},
                  "does not hold exactly the tensors of a FLUX.1 checkpoint in its layout")


# ---------------------------------------------------------------------------------------- VAE


def vae_layout(keys: Collection[str]) -> Layout | None:
    return _layout(keys, BFL_VAE_MARKER, DIFFUSERS_VAE_MARKER)


def vae_config(shapes: Shapes, layout: Layout, origin: Path) -> dict[str, Any]:
    """An AutoencoderKL config for the FLUX.1 autoencoder (any width) read from tensor shapes."""
    down = "encoder.down.{i}.block.{j}.conv1.weight" if layout == "bfl" else \
        "encoder.down_blocks.{i}.resnets.{j}.conv1.weight"
    attn = "encoder.mid.attn_1.q.weight" if layout == "bfl" else "encoder.mid_block.attentions.0.to_q.weight"
    level = r"encoder\.down\.(\d+)\." if layout == "bfl" else r"encoder\.down_blocks\.(\d+)\."
    block = r"encoder\.down\.0\.block\.(\d+)\." if layout == "bfl" else r"encoder\.down_blocks\.0\.resnets\.(\d+)\."
    try:
        levels, per_level = _count(shapes, level), _count(shapes, block)
        channels = [shapes[down.format(i=i, j=0)][0] for i in range(levels)]
        in_ch = shapes["encoder.conv_in.weight"][1]
        out_ch = shapes["decoder.conv_out.weight"][0]
        z = shapes["decoder.conv_in.weight"][1]
    except (KeyError, IndexError) as e:
        raise WrongWeights(origin, f"is not a complete FLUX.1 autoencoder (no tensor {e}).") from None
    if z != 16:
        raise WrongWeights(origin, f"is an autoencoder with {z} latent channels; FLUX.1 needs its 16-channel "
                                   "ae.safetensors (an SDXL/SD1.5 VAE will not work).")
    return dict(
        in_channels=in_ch, out_channels=out_ch, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(channels),
        layers_per_block=per_level, act_fn="silu", latent_channels=z, norm_num_groups=VAE_GROUPS,
        sample_size=1024, scaling_factor=VAE_SCALING, shift_factor=VAE_SHIFT, force_upcast=True,
        use_quant_conv="quant_conv.weight" in shapes, use_post_quant_conv="post_quant_conv.weight" in shapes,
        mid_block_add_attention=attn in shapes,
    )


def convert_bfl_vae(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL/LDM ``ae.safetensors`` tensors -> diffusers AutoencoderKL keys, by diffusers' own converter
    (it reshapes the 1x1-conv attention weights to Linear)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(dict(state), dict(config))
