"""FLUX.1 checkpoint layouts and the key plans that read BFL's into diffusers' modules.

A transformer file comes in two layouts: BFL's reference one (``flux1-dev.safetensors``,
community SRPO repacks: ``double_blocks.N.img_attn.qkv``…) and diffusers' one (FLUX.1-dev
``transformer/`` shards, tencent/SRPO ``diffusion_pytorch_model.safetensors``); the autoencoder comes
as BFL's ``ae.safetensors`` (the LDM layout SDXL's VAE has too, so its key map is SDXL's) or diffusers'.
The architecture every plan is built for comes from ``arch.py``.

Ops (verified against diffusers' converter at full size, ../shared/fixtures/flux/README.md):
``same`` (a copy); ``chunk3[j]`` (img/txt ``qkv`` → q, k, v); ``split[H,H,H,mlp][j]`` (single-block
``linear1`` → q, k, v, proj_mlp); ``swap_halves`` (BFL's final modulation is [shift; scale],
diffusers wants [scale; shift]).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path

import torch

from ..sdxl.keymap import keymap_plan, vae_keymap
from ..tensor_files import check_tensors, same
from .arch import FluxArch, Layout

Shapes = Mapping[str, Sequence[int]]
Op = Callable[[torch.Tensor], torch.Tensor]

BFL_MARKER = "double_blocks.0.img_attn.qkv.weight"
DIFFUSERS_MARKER = "transformer_blocks.0.attn.to_q.weight"
# ComfyUI all-in-one checkpoints and some repacks nest the transformer under a prefix
TRANSFORMER_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.", "transformer.", "model.")
BFL_VAE_MARKER = "encoder.down.0.block.0.conv1.weight"
DIFFUSERS_VAE_MARKER = "encoder.down_blocks.0.resnets.0.conv1.weight"
VAE_PREFIXES = ("", "first_stage_model.", "vae.", "ae.")


def transformer_layout(keys: Collection[str]) -> Layout | None:
    return _layout(keys, BFL_MARKER, DIFFUSERS_MARKER)


def vae_layout(keys: Collection[str]) -> Layout | None:
    return _layout(keys, BFL_VAE_MARKER, DIFFUSERS_VAE_MARKER)


def _layout(keys: Collection[str], bfl_marker: str, diffusers_marker: str) -> Layout | None:
    if bfl_marker in keys:
        return "bfl"
    if diffusers_marker in keys:
        return "diffusers"
    return None


# ------------------------------------------------------------------------------- transformer plan


def _chunk3(j: int, t: torch.Tensor) -> torch.Tensor:
    return t.chunk(3, dim=0)[j]


def _split(sizes: tuple[int, ...], j: int, t: torch.Tensor) -> torch.Tensor:
    return t.split(list(sizes), dim=0)[j]


def swap_halves(t: torch.Tensor) -> torch.Tensor:
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


def bfl_transformer_plan(shapes: Shapes, arch: FluxArch) -> dict[str, tuple[str, Op]]:
    """diffusers key -> (BFL key, op) for a transformer of architecture ``arch``."""
    hidden = arch.hidden_size
    plan: dict[str, tuple[str, Op]] = {}
    for wb in ("weight", "bias"):
        for d, b in _TOP.items():
            plan[f"{d}.{wb}"] = (f"{b}.{wb}", same)
        plan[f"norm_out.linear.{wb}"] = (f"final_layer.adaLN_modulation.1.{wb}", swap_halves)
        for i in range(arch.depth):
            for d, b in _DOUBLE.items():
                plan[f"transformer_blocks.{i}.{d}.{wb}"] = (f"double_blocks.{i}.{b}.{wb}", same)
            for b, outs in _DOUBLE_QKV.items():
                for j, d in enumerate(outs):
                    plan[f"transformer_blocks.{i}.{d}.{wb}"] = (f"double_blocks.{i}.{b}.{wb}", partial(_chunk3, j))
        for i in range(arch.depth_single_blocks):
            src = f"single_blocks.{i}.linear1.{wb}"
            mlp = shapes[src][0] - 3 * hidden if src in shapes else 4 * hidden
            sizes = (hidden, hidden, hidden, mlp)
            for j, d in enumerate(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")):
                plan[f"single_transformer_blocks.{i}.{d}.{wb}"] = (src, partial(_split, sizes, j))
            for d, b in _SINGLE.items():
                plan[f"single_transformer_blocks.{i}.{d}.{wb}"] = (f"single_blocks.{i}.{b}.{wb}", same)
    for i in range(arch.depth):
        for d, b in _DOUBLE_NORMS.items():
            plan[f"transformer_blocks.{i}.{d}"] = (f"double_blocks.{i}.{b}", same)
    for i in range(arch.depth_single_blocks):
        for d, b in _SINGLE_NORMS.items():
            plan[f"single_transformer_blocks.{i}.{d}"] = (f"single_blocks.{i}.{b}", same)
    if not arch.guidance_embed:
        plan = {k: v for k, v in plan.items() if "guidance_embedder" not in k}
    return plan


def plan_sources(origin: Path, plan: Mapping[str, tuple[str, Op]], available: Collection[str]) -> None:
    """Every source the plan reads must exist, and every tensor in the file must be used."""
    check_tensors(origin, set(available), {src for src, _ in plan.values()},
                  "does not hold exactly the tensors of a FLUX.1 checkpoint in its layout")


# ---------------------------------------------------------------------------------------- VAE


def bfl_vae_plan(module_shapes: Mapping[str, tuple[int, ...]], levels: int) -> dict[str, tuple[str, Op]]:
    """diffusers AutoencoderKL key -> (``ae.safetensors`` key, op): the LDM layout, by SDXL's key map
    (attention projections are 1x1 convolutions there, linear layers here)."""
    return keymap_plan(vae_keymap(module_shapes.keys(), levels, prefix=""), module_shapes)
