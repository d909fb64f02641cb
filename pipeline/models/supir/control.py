"""SUPIR's control encoder (``GLVControl``): a trainable copy of SDXL's encoder half that looks at the
low-quality latent and returns ten feature maps for the connectors.

It is built from diffusers' own SDXL blocks (the down blocks and mid block of a
``UNet2DConditionModel`` made from the same config), plus the one thing diffusers lacks: a hint
convolution that adds the LQ latent to the first feature map. Reference: Fanghua-Yu/SUPIR
``SUPIR/modules/SUPIR_v0.py::GLVControl``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..meta import built
from .unet import embedding, encoder_half


class ControlEncoder(nn.Module):
    def __init__(self, unet_config: dict[str, Any]) -> None:
        super().__init__()
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

        # Borrow the exact SDXL encoder-half modules; the donor's up path is dropped with it.
        donor = built(UNet2DConditionModel.from_config(unet_config), UNet2DConditionModel)
        self.conv_in = donor.conv_in
        self.time_proj = donor.time_proj
        self.time_embedding = donor.time_embedding
        self.add_embedding = donor.add_embedding
        self.down_blocks = donor.down_blocks
        self.mid_block = donor.mid_block
        width = unet_config["block_out_channels"][0]
        self.hint_conv = nn.Conv2d(unet_config["in_channels"], width, 3, padding=1)  # input_hint_block.0

    def forward(self, hint: torch.Tensor, t: torch.Tensor, x: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor) -> list[torch.Tensor]:
        """``hint`` = LQ latent z_LQ, ``x`` = the c_in-scaled noisy latent the UNet gets, ``t`` = the
        discrete timestep per row, ``context`` = text tokens, ``y`` = SDXL's vector conditioning.
        Returns [conv_in(x) + hint_conv(hint), every down-block output (8 for SDXL), mid block]."""
        dtype = self.conv_in.weight.dtype
        x, hint, context, y = x.to(dtype), hint.to(dtype), context.to(dtype), y.to(dtype)
        emb = embedding(self, t, y, dtype)
        mid, feats = encoder_half(self, self.conv_in(x) + self.hint_conv(hint), emb, context)
        return [*feats, mid]
