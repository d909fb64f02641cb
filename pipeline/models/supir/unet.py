"""SDXL's UNet with SUPIR's connectors in its decoder.

diffusers' ControlNet hooks can only *add* residuals to the skips; SUPIR *replaces* the skip
concatenation (ZeroSFT) and inserts cross-attention before the upsamplers (ZeroCrossAttn). So the
forward is written out here over the unchanged diffusers modules: encoder half and mid block as in
``UNet2DConditionModel.forward``, then the decoder with the joins done by the connectors. Without
control (or at scale 0) the diffusers up blocks run as they are, so the output is plain SDXL.
Reference: Fanghua-Yu/SUPIR ``LightGLVUNet.forward``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .connectors import ZeroCrossAttn, ZeroSFT

if TYPE_CHECKING:
    from diffusers.models.unets.unet_2d_blocks import CrossAttnUpBlock2D, UpBlock2D
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from .control import ControlEncoder


class SupirUNet(nn.Module):
    def __init__(self, unet: UNet2DConditionModel, connectors: nn.ModuleList) -> None:
        super().__init__()
        self.unet = unet  # SDXL weights
        self.connectors = connectors  # project_modules, checkpoint order

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, y: torch.Tensor,
                control: list[torch.Tensor] | None = None, scale: float = 1.0) -> torch.Tensor:
        """eps prediction. ``t``: int64 timestep per row; ``y``: SDXL vector conditioning (pooled text
        + size embeddings, see ``vector_cond``); ``control``: the control encoder's 10 features."""
        u = self.unet
        dtype = u.conv_in.weight.dtype
        x, context, y = x.to(dtype), context.to(dtype), y.to(dtype)
        # 1. time + micro-conditioning embedding
        emb = embedding(u, t, y, dtype)
        # 2. encoder half, keeping every skip
        h, skips = encoder_half(u, u.conv_in(x), emb, context)
        # 3. decoder: plain SDXL, or with the connectors doing the joins
        up_factor = 2 ** sum(b.upsamplers is not None for b in u.up_blocks)
        forward_size = any(d % up_factor for d in x.shape[-2:])
        if control is None or scale == 0:
            h = self._plain_decoder(h, emb, context, skips, forward_size)
        else:
            h = self._controlled_decoder(h, emb, context, skips, control, scale, forward_size)
        # 4. output head (as diffusers: SDXL always has the norm, the config can leave it out)
        if u.conv_norm_out is not None and u.conv_act is not None:
            h = u.conv_act(u.conv_norm_out(h))
        return u.conv_out(h)

    def _plain_decoder(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
                       skips: list[torch.Tensor], forward_size: bool) -> torch.Tensor:
        for i, block in enumerate(up_blocks(self.unet)):
            n = len(block.resnets)
            res, skips = tuple(skips[-n:]), skips[:-n]
            size = skips[-1].shape[2:] if forward_size and i < len(self.unet.up_blocks) - 1 else None
            if getattr(block, "has_cross_attention", False):
                h = block(hidden_states=h, res_hidden_states_tuple=res, temb=emb,
                          encoder_hidden_states=context, upsample_size=size)
            else:
                h = block(hidden_states=h, res_hidden_states_tuple=res, temb=emb, upsample_size=size)
        return h

    def _controlled_decoder(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
                            skips: list[torch.Tensor], control: list[torch.Tensor], scale: float,
                            forward_size: bool) -> torch.Tensor:
        pm, ci = len(self.connectors) - 1, len(control) - 1
        h = self._sft(pm, control[ci], h, None, scale)  # after the mid block
        pm, ci = pm - 1, ci - 1
        blocks = up_blocks(self.unet)
        for b, block in enumerate(blocks):
            attentions = getattr(block, "attentions", None)
            for i, resnet in enumerate(block.resnets):
                h = self._sft(pm, control[ci], skips.pop(), h, scale)  # replaces cat([h, skip])
                pm -= 1
                h = resnet(h, emb)
                if attentions is not None:
                    h = attentions[i](h, encoder_hidden_states=context, return_dict=False)[0]
                if i == len(block.resnets) - 1 and block.upsamplers is not None:
                    if attentions is not None:
                        xattn = self.connectors[pm]
                        if not isinstance(xattn, ZeroCrossAttn):
                            raise RuntimeError(f"connector {pm} should be a ZeroCrossAttn")
                        h = xattn(control[ci], h, scale)
                        pm -= 1
                    size = skips[-1].shape[2:] if forward_size and b < len(blocks) - 1 else None
                    h = block.upsamplers[0](h, size)
                ci -= 1
        return h

    def _sft(self, index: int, c: torch.Tensor, skip: torch.Tensor, h: torch.Tensor | None,
             scale: float) -> torch.Tensor:
        mod = self.connectors[index]
        if not isinstance(mod, ZeroSFT):
            raise RuntimeError(f"connector {index} should be a ZeroSFT")
        return mod(c, skip, h, scale)


def up_blocks(unet: UNet2DConditionModel) -> list[CrossAttnUpBlock2D | UpBlock2D]:
    """The UNet's decoder blocks, checked to be SDXL's two kinds (the joins above rely on their layout)."""
    from diffusers.models.unets.unet_2d_blocks import CrossAttnUpBlock2D, UpBlock2D

    blocks: list[CrossAttnUpBlock2D | UpBlock2D] = []
    for block in unet.up_blocks:
        if not isinstance(block, (CrossAttnUpBlock2D, UpBlock2D)):
            raise TypeError(f"SUPIR joins SDXL's up blocks, not a {type(block).__name__}")
        blocks.append(block)
    return blocks


def embedding(m: UNet2DConditionModel | ControlEncoder, t: torch.Tensor, y: torch.Tensor,
              dtype: torch.dtype) -> torch.Tensor:
    """SDXL's time + micro-conditioning embedding (diffusers: time_embedding + add_embedding); ``m`` is
    the UNet or the control encoder, which holds copies of the same modules."""
    return m.time_embedding(m.time_proj(t).to(dtype)) + m.add_embedding(y)


def encoder_half(m: UNet2DConditionModel | ControlEncoder, h: torch.Tensor, emb: torch.Tensor,
                 context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SDXL's down blocks and mid block from ``h`` (conv_in's output), as ``UNet2DConditionModel.forward``
    runs them: (the mid block's output, [h, every down block's outputs]). The UNet keeps the list as its
    skips; the control encoder (a copy of this half) returns it as its features."""
    skips = [h]
    for block in m.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
        else:
            h, res = block(hidden_states=h, temb=emb)
        skips.extend(res)
    return m.mid_block(h, emb, encoder_hidden_states=context), skips


def vector_cond(pooled: torch.Tensor, time_ids: torch.Tensor, add_time_proj: nn.Module) -> torch.Tensor:
    """SDXL's vector conditioning y = [pooled text, emb(orig_h), emb(orig_w), emb(top), emb(left),
    emb(target_h), emb(target_w)], the input of ``add_embedding`` (diffusers: text_embeds + time_ids)."""
    emb = add_time_proj(time_ids.flatten()).reshape(time_ids.shape[0], -1)
    return torch.cat([pooled, emb.to(pooled.dtype)], dim=-1)
