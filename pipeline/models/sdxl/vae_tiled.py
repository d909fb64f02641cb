"""VAE encode/decode for large images in tiles, without tonal seams.

Per-tile GroupNorm (what diffusers' ``enable_tiling`` does) gives every tile its own brightness and
contrast statistics, which shows as seams in flat skin. SUPIR's tiled VAE (pkuliyi2015's VAEHook)
synchronises GroupNorm statistics over all tiles. Here every GroupNorm's statistics are first taken
from one pass over a downscaled copy of the whole input, then every tile is run with those shared
statistics (the "fast" variant of the same idea), and the tiles are blended over their overlap with
``pipeline.tiling``. An input that fits one tile runs untiled, exactly as the plain module would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...progress import CancelToken
from ...tiling import Assembler, crop_tiles, plan_tiles

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL


@contextlib.contextmanager
def _shared_groupnorm(module: nn.Module, mode: str, stats: list) -> Iterator[None]:
    """``record``: run normally and append each GroupNorm's (mean, var) in call order.
    ``apply``: normalise with the recorded statistics (same call order) instead of the input's own."""
    norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)]
    cursor = [0]

    def make(gn: nn.GroupNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            b, c = x.shape[:2]
            g = x.float().reshape(b, gn.num_groups, -1)
            if mode == "record":
                mean, var = g.mean(-1, keepdim=True), g.var(-1, keepdim=True, unbiased=False)
                stats.append((mean, var))
            else:
                mean, var = stats[cursor[0] % len(stats)]
                cursor[0] += 1
            y = ((g - mean) / torch.sqrt(var + gn.eps)).reshape(x.shape)
            if gn.affine:
                shape = (1, c) + (1,) * (x.dim() - 2)
                y = y * gn.weight.float().reshape(shape) + gn.bias.float().reshape(shape)
            return y.to(x.dtype)

        return forward

    for gn in norms:
        # an instance attribute shadows GroupNorm.forward for the block (torch types forward as a method)
        gn.forward = make(gn)  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        for gn in norms:
            del gn.forward


def _downscaled(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    f = size / max(h, w)
    if f >= 1:
        return x
    nh, nw = max(8, round(h * f / 8) * 8), max(8, round(w * f / 8) * 8)
    return F.interpolate(x, size=(nh, nw), mode="area")


def run_tiled(net: Callable[[torch.Tensor], torch.Tensor], norms: nn.Module, x: torch.Tensor, *, tile: int,
              overlap: int, scale: float, out_channels: int, stats_size: int,
              cancel: CancelToken | None = None) -> torch.Tensor:
    """Apply ``net`` (whose GroupNorms live in ``norms``) to ``x`` [1, C, H, W] tile by tile.

    ``scale`` is the output/input size ratio (8 for a decoder, 1/8 for an encoder); ``tile`` and
    ``overlap`` are in input pixels and must be multiples of 1/scale (encoders) or 1 (decoders)."""
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return net(x)
    step = round(1 / scale) if scale < 1 else 1
    plan = plan_tiles(h, w, tile=tile, overlap=overlap, multiple=step)
    stats: list = []
    with _shared_groupnorm(norms, "record", stats):
        net(_downscaled(x, stats_size))
    out_plan = plan.scaled(scale)
    asm = Assembler(out_plan, out_channels, device=x.device, dtype=torch.float32)
    tiles = crop_tiles(x, plan)
    for i in range(len(plan)):
        if cancel is not None:
            cancel.check()
        with _shared_groupnorm(norms, "apply", stats):
            asm.add(i, net(tiles[i : i + 1]).float())
    return asm.result()


def encode_moments(vae: AutoencoderKL, encoder: nn.Module, x: torch.Tensor, *, tile: int = 1024, overlap: int = 128,
                   cancel: CancelToken | None = None) -> torch.Tensor:
    """quant_conv(encoder(x)) for an image in [-1, 1]; ``encoder`` is SDXL's or SUPIR's denoise encoder."""
    dtype = next(encoder.parameters()).dtype
    x = x.to(dtype)

    quant_conv = vae.quant_conv  # SDXL's VAE has one; diffusers skips it when a config leaves it out

    def net(t: torch.Tensor) -> torch.Tensor:
        h = encoder(t)
        return quant_conv(h) if quant_conv is not None else h

    out = run_tiled(net, encoder, x, tile=tile, overlap=overlap, scale=1 / 8,
                    out_channels=2 * vae.config["latent_channels"], stats_size=512, cancel=cancel)
    return out.float()


def decode(vae: AutoencoderKL, z: torch.Tensor, *, tile: int = 128, overlap: int = 16,
           cancel: CancelToken | None = None) -> torch.Tensor:
    """decoder(post_quant_conv(z)) for an unscaled latent; ``tile``/``overlap`` in latent pixels."""
    dtype = next(vae.decoder.parameters()).dtype
    z = z.to(dtype)

    post_quant_conv = vae.post_quant_conv

    def net(t: torch.Tensor) -> torch.Tensor:
        return vae.decoder(post_quant_conv(t) if post_quant_conv is not None else t)

    out = run_tiled(net, vae.decoder, z, tile=tile, overlap=overlap, scale=8,
                    out_channels=vae.config["in_channels"], stats_size=64, cancel=cancel)
    return out.float()
