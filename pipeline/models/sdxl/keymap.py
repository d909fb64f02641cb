"""Original (LDM/SGM, OpenCLIP) checkpoint names <-> diffusers/transformers module names for SDXL.

A key map is generated from the module itself: every parameter of the diffusers model is given the
name it has in ``sd_xl_base_1.0.safetensors`` (or in SUPIR's file, which reuses the same schemes), plus
how the tensor changes on the way (1x1 conv <-> linear, OpenCLIP's fused q/k/v, a transposed
projection). So the expected file keys are known before a file is opened: a loader reports exactly
which are missing or unexpected, and the same map writes the tiny test checkpoints in the original
layout. Same naming scheme as diffusers' ``convert_ldm_unet_checkpoint`` and friends, but as one
explicit rule per module kind instead of string surgery over a whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ..tensor_files import TensorSource, check_tensors, stream_into
from .arch import ArchError, UNetArch

M = TypeVar("M", bound=nn.Module)

# Transform kinds: "" = as is; "conv1x1" = module [o, i] <- file [o, i, 1, 1];
# "T" = transposed; "chunk0"/"chunk1"/"chunk2" = third of the file tensor along dim 0.
Transform = str
Op = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class KeyMap:
    prefix: str  # file prefix, e.g. "model.diffusion_model."
    entries: Mapping[str, tuple[str, Transform]]  # module key -> (file key without prefix, transform)
    ignore: frozenset[str] = field(default_factory=frozenset)  # file keys that may be there, unused

    def file_keys(self) -> set[str]:
        return {self.prefix + f for f, _ in self.entries.values()}


def from_file(t: torch.Tensor, transform: Transform, shape: tuple[int, ...]) -> torch.Tensor:
    """The module's tensor from the file's (``shape`` is the module parameter's shape)."""
    if transform == "conv1x1":
        t = t.reshape(shape)
    elif transform == "T":
        t = t.t()
    elif transform.startswith("chunk"):
        t = t.chunk(3, dim=0)[int(transform[-1])]
    return t.contiguous()


def to_file(state: Mapping[str, torch.Tensor], km: KeyMap) -> dict[str, torch.Tensor]:
    """The module's state dict in the file's names (the inverse of ``from_file``)."""
    out: dict[str, torch.Tensor] = {}
    chunks: dict[str, dict[int, torch.Tensor]] = {}
    for mk, (fk, tr) in km.entries.items():
        t = state[mk]
        if tr == "conv1x1":
            t = t.reshape(*t.shape, 1, 1)
        elif tr == "T":
            t = t.t()
        elif tr.startswith("chunk"):
            chunks.setdefault(fk, {})[int(tr[-1])] = t
            continue
        out[km.prefix + fk] = t.contiguous()
    for fk, parts in chunks.items():
        out[km.prefix + fk] = torch.cat([parts[i] for i in range(3)], 0).contiguous()
    return out


# ---- UNet and SUPIR's control encoder (SGM UNetModel names) ----------------------------------------

_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
        "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_EMB = {"time_embedding": ("time_embed.0", "time_embed.2"),
        "add_embedding": ("label_emb.0.0", "label_emb.0.2")}


def unet_file_key(key: str, arch: UNetArch) -> str:
    """diffusers UNet2DConditionModel (or control encoder) key -> SGM key."""
    p = key.split(".")
    step = arch.layers + 1  # SGM input blocks per level: res blocks + a downsampler
    head = p[0]
    if head == "conv_in":
        return "input_blocks.0.0." + p[-1]
    if head == "hint_conv":
        return "input_hint_block.0." + p[-1]
    if head in _EMB:
        return f"{_EMB[head][p[1] == 'linear_2']}.{p[-1]}"
    if head == "conv_norm_out":
        return "out.0." + p[-1]
    if head == "conv_out":
        return "out.2." + p[-1]
    if head == "mid_block":
        i = int(p[2])
        if p[1] == "resnets":
            return f"middle_block.{2 * i}.{_RES[p[3]]}.{p[-1]}"
        return "middle_block.1." + ".".join(p[3:])
    if head in ("down_blocks", "up_blocks"):
        b, kind = int(p[1]), p[2]
        down = head == "down_blocks"
        base = "input_blocks" if down else "output_blocks"
        if kind == "resnets":
            idx = (1 + b * step if down else b * step) + int(p[3])
            return f"{base}.{idx}.0.{_RES[p[4]]}.{p[-1]}"
        if kind == "attentions":
            idx = (1 + b * step if down else b * step) + int(p[3])
            return f"{base}.{idx}.1." + ".".join(p[4:])
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * step}.0.op.{p[-1]}"
        if kind == "upsamplers":
            has_attn = arch.attention[::-1][b]
            return f"output_blocks.{b * step + arch.layers}.{2 if has_attn else 1}.conv.{p[-1]}"
    raise ArchError(f"no SGM name for UNet parameter '{key}'")


def unet_keymap(module_keys: Iterable[str], arch: UNetArch, prefix: str,
                ignore: Iterable[str] = ()) -> KeyMap:
    return KeyMap(prefix, {k: (unet_file_key(k, arch), "") for k in module_keys}, frozenset(ignore))


# ---- VAE (LDM first_stage_model names) --------------------------------------------------------------

_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def _coder_key(p: list[str], levels: int, decoder: bool) -> tuple[str, Transform]:
    """Key inside a diffusers Encoder/Decoder -> LDM key inside encoder/decoder."""
    head = p[0]
    if head in ("conv_in", "conv_out"):
        return ".".join(p), ""
    if head == "conv_norm_out":
        return "norm_out." + p[-1], ""
    if head == "mid_block":
        if p[1] == "resnets":
            return f"mid.block_{int(p[2]) + 1}.{p[3]}.{p[-1]}", ""
        return f"mid.attn_1.{_ATTN[p[3]]}.{p[-1]}", "conv1x1" if p[3] != "group_norm" and p[-1] == "weight" else ""
    if head in ("down_blocks", "up_blocks"):
        i = int(p[1])
        level = levels - 1 - i if decoder else i
        part = "up" if decoder else "down"
        if p[2] == "resnets":
            leaf = "nin_shortcut" if p[4] == "conv_shortcut" else p[4]
            return f"{part}.{level}.block.{p[3]}.{leaf}.{p[-1]}", ""
        return f"{part}.{level}.{'upsample' if decoder else 'downsample'}.conv.{p[-1]}", ""
    raise ArchError(f"no LDM name for VAE parameter '{'.'.join(p)}'")


def vae_keymap(module_keys: Iterable[str], levels: int, prefix: str = "first_stage_model.") -> KeyMap:
    """AutoencoderKL keys -> ``first_stage_model.{encoder,decoder,quant_conv,post_quant_conv}.*``."""
    entries = {}
    for k in module_keys:
        p = k.split(".")
        if p[0] in ("encoder", "decoder"):
            fk, tr = _coder_key(p[1:], levels, decoder=p[0] == "decoder")
            entries[k] = (f"{p[0]}.{fk}", tr)
        elif p[0] in ("quant_conv", "post_quant_conv"):
            entries[k] = (k, "")
        else:
            raise ArchError(f"no LDM name for VAE parameter '{k}'")
    return KeyMap(prefix, entries)


def encoder_keymap(module_keys: Iterable[str], levels: int, prefix: str) -> KeyMap:
    """A bare diffusers Encoder (SUPIR's denoise encoder) -> LDM encoder keys under ``prefix``."""
    return KeyMap(prefix, {k: _coder_key(k.split("."), levels, decoder=False) for k in module_keys})


# ---- Text encoders ---------------------------------------------------------------------------------

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1."


def clip_l_keymap(module_keys: Iterable[str]) -> KeyMap:
    """transformers CLIPTextModel -> ``conditioner.embedders.0.transformer.text_model.*``.

    transformers >= 5.6 dropped the ``text_model.`` level from CLIPTextModel's own keys while SGM
    files keep it, so the prefix is put back here whichever version built the module."""
    entries = {k: (k if k.startswith("text_model.") else "text_model." + k, "") for k in module_keys}
    return KeyMap(CLIP_L_PREFIX, entries, frozenset({CLIP_L_PREFIX + "text_model.embeddings.position_ids"}))


_G_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
            "self_attn.out_proj": "attn.out_proj"}
_QKV = {"q_proj": "chunk0", "k_proj": "chunk1", "v_proj": "chunk2"}


def clip_g_file_key(key: str) -> tuple[str, Transform]:
    """transformers CLIPTextModelWithProjection key -> OpenCLIP ``model.*`` key."""
    k = key.removeprefix("text_model.")
    if key == "text_projection.weight":
        return "model.text_projection", "T"
    if k == "embeddings.token_embedding.weight":
        return "model.token_embedding.weight", ""
    if k == "embeddings.position_embedding.weight":
        return "model.positional_embedding", ""
    if k.startswith("final_layer_norm."):
        return "model.ln_final." + k.split(".")[-1], ""
    if k.startswith("encoder.layers."):
        p = k.split(".")
        i, inner, leaf = p[2], ".".join(p[3:-1]), p[-1]
        base = f"model.transformer.resblocks.{i}."
        if inner.startswith("self_attn.") and inner.split(".")[1] in _QKV:
            return f"{base}attn.in_proj_{leaf}", _QKV[inner.split(".")[1]]
        if inner in _G_LAYER:
            return f"{base}{_G_LAYER[inner]}.{leaf}", ""
    raise ArchError(f"no OpenCLIP name for text encoder parameter '{key}'")


def clip_g_keymap(module_keys: Iterable[str]) -> KeyMap:
    ignore = {CLIP_G_PREFIX + "model.logit_scale", CLIP_G_PREFIX + "model.attn_mask"}
    return KeyMap(CLIP_G_PREFIX, {k: clip_g_file_key(k) for k in module_keys}, frozenset(ignore))


# ---- Checking and loading through a key map ------------------------------------------------------


def file_shape(shape: tuple[int, ...], transform: str) -> tuple[int, ...]:
    """The shape a module tensor has in the original file."""
    if transform == "conv1x1":
        return (*shape, 1, 1)
    if transform == "T":
        return tuple(reversed(shape))
    if transform.startswith("chunk"):
        return (3 * shape[0], *shape[1:])
    return shape


def verify(
    path: str | Path,
    shapes: Mapping[str, tuple[int, ...]],
    parts: Sequence[tuple[KeyMap, nn.Module]],
    what: str,
    *,
    whole_file: bool = False,
    ignore: Iterable[str] = (),
) -> None:
    """Every key each map expects is in ``shapes`` with the right shape; with ``whole_file`` every
    key of the file is used by some map (or ignored). Raises WrongWeights listing all problems."""
    expected: dict[str, tuple[int, ...]] = {}
    ignored = set(ignore)
    for km, module in parts:
        state = module.state_dict()
        ignored |= km.ignore
        for mk, (fk, tr) in km.entries.items():
            expected[km.prefix + fk] = file_shape(tuple(state[mk].shape), tr)
    prefixes = tuple(km.prefix for km, _ in parts)
    present = {k: s for k, s in shapes.items() if whole_file or k.startswith(prefixes)}
    check_tensors(path, present, expected, f"is not a complete {what} checkpoint", ignore=ignored)


def keymap_plan(km: KeyMap, module_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Op]]:
    """The key map as a ``tensor_files`` plan: module key -> (file key, op giving the module's tensor)."""
    return {mk: (km.prefix + fk, partial(from_file, transform=tr, shape=tuple(module_shapes[mk])))
            for mk, (fk, tr) in km.entries.items()}


def assign(module: M, ckpt: TensorSource, km: KeyMap, dtype: torch.dtype, what: str) -> M:
    """Stream the (already verified) tensors into the meta-built ``module``, cast to ``dtype``."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    stream_into(module, ckpt, keymap_plan(km, shapes), dtype=dtype, what=what)
    return module
