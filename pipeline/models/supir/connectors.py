"""SUPIR's connectors ("project modules"): how the control features enter the SDXL decoder.

Paper: Yu et al., "Scaling Up to Excellence" (arXiv 2401.13627); reference: Fanghua-Yu/SUPIR
``SUPIR/modules/SUPIR_v0.py`` (ZeroSFT, ZeroCrossAttn, LightGLVUNet). Parameter names are the
checkpoint's, so ``model.diffusion_model.project_modules.<i>.*`` loads with the prefix stripped.

- ZeroSFT replaces a skip concatenation: the skip gets a zero-initialised 1x1 projection of the
  control feature added, is concatenated behind the decoder state, group-normalised and modulated by
  spatial scale/shift maps computed from the control feature; the result is blended with the plain
  concatenation by ``scale`` (0 = vanilla SDXL).
- ZeroCrossAttn lets the decoder state attend to the control feature (tokens = pixels) just before an
  upsampler; ``x + scale * attn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from ..sdxl.arch import UNetArch

NHIDDEN = 128  # ZeroSFT's hidden width, hard-coded upstream


class _GroupNorm32(nn.GroupNorm):
    """SGM's GroupNorm32: statistics in float32 whatever the activations' dtype (bf16 safety)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ZeroSFT(nn.Module):
    def __init__(self, label_nc: int, norm_nc: int, concat_channels: int = 0, nhidden: int = NHIDDEN) -> None:
        super().__init__()
        out = norm_nc + concat_channels
        self.param_free_norm = _GroupNorm32(32, out, eps=1e-5, affine=True)  # affine despite the name
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, 3, padding=1), nn.SiLU())
        self.zero_mul = nn.Conv2d(nhidden, out, 3, padding=1)
        self.zero_add = nn.Conv2d(nhidden, out, 3, padding=1)
        self.zero_conv = nn.Conv2d(label_nc, norm_nc, 1)
        self.pre_concat = concat_channels != 0

    def forward(self, c: torch.Tensor, h: torch.Tensor, h_ori: torch.Tensor | None = None,
                scale: float = 1.0) -> torch.Tensor:
        """``c`` control feature, ``h`` skip (or the mid-block output), ``h_ori`` decoder state."""
        before = h_ori if self.pre_concat else None  # [decoder, skip]: the order SDXL's up blocks concatenate
        h_raw = torch.cat([before, h], dim=1) if before is not None else h
        h = h + self.zero_conv(c)
        if before is not None:
            h = torch.cat([before, h], dim=1)
        actv = self.mlp_shared(c)
        gamma, beta = self.zero_mul(actv), self.zero_add(actv)
        h = self.param_free_norm(h) * (gamma + 1) + beta
        return h * scale + h_raw * (1 - scale)


class ZeroCrossAttn(nn.Module):
    def __init__(self, context_dim: int, query_dim: int) -> None:
        super().__init__()
        # no q/k/v bias, biased output: SGM's CrossAttention; heads are 64 wide at every size
        self.attn = Attention(query_dim=query_dim, cross_attention_dim=context_dim, heads=max(1, query_dim // 64),
                              dim_head=64, bias=False, out_bias=True)
        self.norm1 = _GroupNorm32(32, query_dim, eps=1e-5, affine=True)
        self.norm2 = _GroupNorm32(32, context_dim, eps=1e-5, affine=True)

    def forward(self, context: torch.Tensor, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.norm1(x).flatten(2).transpose(1, 2)
        kv = self.norm2(context).flatten(2).transpose(1, 2)
        out = self.attn(q, encoder_hidden_states=kv)
        return x + out.transpose(1, 2).reshape(b, c, h, w) * scale


@dataclass(frozen=True)
class Site:
    """One connector in the order the decoder uses them (checkpoint index counts down from the top)."""

    kind: str  # "sft" (a skip join or the mid block) or "xattn" (before an upsampler)
    control: int  # which of the 10 control features it reads
    label_nc: int  # control feature width
    norm_nc: int  # width of the skip (SFT) / of the decoder state (xattn)
    concat: int  # decoder-state width concatenated in front of the skip (SFT joins)


def connector_sites(arch: UNetArch) -> list[Site]:
    """Walk SDXL's decoder the way LightGLVUNet does and list its connectors in the order of use.

    For SDXL this gives the 12 modules of SUPIR-v0 (checkpoint indices 11 .. 0): the mid block,
    9 skip joins, and a ZeroCrossAttn before each of the two upsamplers."""
    levels = len(arch.widths)
    skips = [arch.widths[0]]  # conv_in, then every res block and downsampler output
    for lvl, w in enumerate(arch.widths):
        skips += [w] * arch.layers
        if lvl < levels - 1:
            skips.append(w)
    control_widths = skips + [arch.widths[-1]]  # + the mid block
    sites = [Site("sft", len(skips), control_widths[-1], arch.widths[-1], 0)]
    state = arch.widths[-1]  # decoder state width
    ci = len(skips) - 1
    for b, lvl in enumerate(reversed(range(levels))):
        for i in range(arch.layers + 1):
            sites.append(Site("sft", ci, control_widths[ci], skips[ci], state))
            state = arch.widths[lvl]
            if i == arch.layers and b < levels - 1 and arch.attention[lvl]:
                sites.append(Site("xattn", ci, control_widths[ci], state, 0))
            ci -= 1
    return sites


def build_connectors(arch: UNetArch, nhidden: int = NHIDDEN) -> nn.ModuleList:
    """The connectors, indexed like the checkpoint (``project_modules.0`` is used last)."""
    mods: list[nn.Module] = []
    for s in reversed(connector_sites(arch)):
        if s.kind == "sft":
            mods.append(ZeroSFT(s.label_nc, s.norm_nc, s.concat, nhidden))
        else:
            mods.append(ZeroCrossAttn(s.label_nc, s.norm_nc))
    return nn.ModuleList(mods)
