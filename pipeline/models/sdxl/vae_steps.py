"""diffusers' VAE ``Encoder`` / ``Decoder`` forward, written as generators that stop at every GroupNorm.

The tiled VAE (``vae_tiled``) runs one such generator per tile in lockstep: at each GroupNorm every tile
hands over its pre-norm activation, the driver sums the group statistics over all tiles (the whole
image at full resolution), and every tile resumes with the same statistics. The code below is the
modules' own forward order (``ResnetBlock2D``, ``UNetMidBlock2D``, the down/up blocks), calling their
sub-modules (convolutions, resamplers, attention projections) unchanged; only the GroupNorm calls are
replaced. A generator yields a one-element list (a ``Box``) holding the activation, so the driver can
move it off the device while other tiles run (the generator keeps no other reference to it), and
receives ``(activation, mean, var)`` back. Blocks this does not know raise TypeError, so a different
VAE layout fails loudly instead of silently running unsynchronised.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import torch
from torch import nn

Box = list  # [tensor]: handed to the driver, which may swap the tensor for a copy elsewhere
Resume = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (activation, per-group mean, per-group var)
Steps = Generator[tuple[nn.GroupNorm, Box], Resume, torch.Tensor]
Park = Callable[[torch.Tensor], torch.Tensor]  # moves a held tensor to where it waits (identity: stays)


def group_norm(gn: nn.GroupNorm, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``gn`` applied with given per-group statistics ([groups], float64) instead of x's own."""
    b, c = x.shape[:2]
    g = x.float().reshape(b, gn.num_groups, -1)
    m = mean.to(torch.float32).view(1, -1, 1)
    inv = torch.rsqrt(var.to(torch.float32) + gn.eps).view(1, -1, 1)
    y = ((g - m) * inv).reshape(x.shape)
    if gn.affine:
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = y * gn.weight.float().reshape(shape) + gn.bias.float().reshape(shape)
    return y.to(x.dtype)


def _norm(gn: nn.GroupNorm, box: Box) -> Steps:
    if not isinstance(gn, nn.GroupNorm):
        raise TypeError(f"expected a GroupNorm, found {type(gn).__name__}")
    handed = [box.pop()]
    x, mean, var = yield gn, handed
    return group_norm(gn, x, mean, var)


def _resnet(block: Any, box: Box, park: Park, unpark: Park) -> Steps:
    if block.upsample is not None or block.downsample is not None or block.time_emb_proj is not None:
        raise TypeError("resnet blocks with resampling or a time embedding are not VAE blocks")
    residual = park(box[0])
    h = yield from _norm(block.norm1, box)
    h = block.conv1(block.nonlinearity(h))
    h = yield from _norm(block.norm2, [h])
    h = block.conv2(block.dropout(block.nonlinearity(h)))
    residual = unpark(residual)
    if block.conv_shortcut is not None:
        residual = block.conv_shortcut(residual)
    return (residual + h) / block.output_scale_factor


class _Normed(nn.Module):
    """Stands in for an attention block's GroupNorm: returns the already normalised tensor."""

    def __init__(self, normed: torch.Tensor) -> None:
        super().__init__()
        self.normed = normed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normed.reshape(x.shape)  # the processor hands its GroupNorm (B, C, H*W)


def _attention(attn: Any, box: Box, park: Park, unpark: Park) -> Steps:
    """The mid block's self-attention, per tile (as every tiled VAE does), on synchronised statistics:
    its own processor runs with the GroupNorm swapped for the normalised tensor."""
    x = park(box[0])
    normed = yield from _norm(attn.group_norm, box)
    gn = attn.group_norm
    attn.group_norm = _Normed(normed)
    try:
        return attn(unpark(x))
    finally:
        attn.group_norm = gn


def _mid(mid: Any, box: Box, park: Park, unpark: Park) -> Steps:
    h = yield from _resnet(mid.resnets[0], box, park, unpark)
    for attn, resnet in zip(mid.attentions, mid.resnets[1:], strict=True):
        if attn is not None:
            h = yield from _attention(attn, [h], park, unpark)
        h = yield from _resnet(resnet, [h], park, unpark)
    return h


def _check(module: nn.Module) -> None:
    if type(module).__name__ not in ("Encoder", "Decoder"):
        raise TypeError(f"{type(module).__name__} is not a diffusers VAE Encoder or Decoder")


def encoder_steps(enc: Any, x: torch.Tensor, park: Park, unpark: Park) -> Steps:
    """``Encoder.forward`` (SDXL's encoder and SUPIR's denoise encoder) stopping at every GroupNorm."""
    _check(enc)
    h = enc.conv_in(x)
    for block in enc.down_blocks:
        for resnet in block.resnets:
            h = yield from _resnet(resnet, [h], park, unpark)
        for down in block.downsamplers or ():
            h = down(h)
    h = yield from _mid(enc.mid_block, [h], park, unpark)
    h = yield from _norm(enc.conv_norm_out, [h])
    return enc.conv_out(enc.conv_act(h))


def decoder_steps(dec: Any, z: torch.Tensor, park: Park, unpark: Park) -> Steps:
    """``Decoder.forward`` without latent embeddings (SDXL's decoder) stopping at every GroupNorm."""
    _check(dec)
    h = dec.conv_in(z)
    h = yield from _mid(dec.mid_block, [h], park, unpark)
    for block in dec.up_blocks:
        for resnet in block.resnets:
            h = yield from _resnet(resnet, [h], park, unpark)
        for up in block.upsamplers or ():
            h = up(h)
    h = yield from _norm(dec.conv_norm_out, [h])
    return dec.conv_out(dec.conv_act(h))
