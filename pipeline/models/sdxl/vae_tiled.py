"""VAE encode/decode for large images in tiles, with the statistics of the untiled pass.

Per-tile GroupNorm (diffusers' ``enable_tiling``) gives every tile its own brightness and contrast, which
shows as seams and tonal shifts; statistics from a downscaled copy (the "fast" variant) shift the whole
image (a reviewer measured output std x1.5 and 14 dB PSNR against the untiled decode). Here, as in
both upstreams' default (pkuliyi2015's VAEHook with ``fast_encoder/fast_decoder=False``, used by SUPIR and
kijai/ComfyUI-SUPIR), the tiles run in lockstep (``vae_steps``): at every GroupNorm the per-group counts,
means and squared deviations of every tile's *core* (the part of the image it owns, so each pixel counts
once) are combined over all tiles, and every tile is normalised with the statistics of the whole image
at full resolution. Only convolutions near tile borders (pad: 32 px encoder, 11 latent px decoder, as
upstream) and the mid block's attention (per tile, as upstream) still see a tile; each tile's core is
written to the output, no blending needed.

By default (``tile=AUTO``) nothing is tiled when the untiled pass fits the memory budget (the free memory
of the device); otherwise 512 px tiles, the workflow's node default. While other tiles run, a tile's
held activations stay on the device, or wait in CPU memory when even those would not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...device import free_memory
from ...progress import CancelToken
from .vae_steps import Steps, decoder_steps, encoder_steps

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

AUTO = -1  # tile setting: untiled when the pass fits the memory budget, else AUTO_TILE
AUTO_TILE = 512  # px
ENCODER_PAD, DECODER_PAD = 32, 11  # px of context around a tile's core (input pixels)
WORKING_COPIES = 5  # activations of the widest full-resolution layer alive at once, untiled (estimate)

Moments = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # per group: count, mean, squared deviations
Combine = Callable[[nn.GroupNorm, list[Moments]], list[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class Core:
    """One tile: the window it runs on (core plus context) and the core it owns, in input pixels."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def _cuts(length: int, tile: int, multiple: int) -> list[int]:
    n = -(-length // tile)
    units = length // multiple
    return [round(i * units / n) * multiple for i in range(n)] + [length]


def plan_cores(h: int, w: int, tile: int, pad: int, multiple: int) -> list[Core]:
    """Cores of at most ``tile`` px partitioning the image, evenly sized, edges on ``multiple``."""
    ys, xs = _cuts(h, tile, multiple), _cuts(w, tile, multiple)
    return [Core(max(0, a - pad), min(h, b + pad), max(0, c - pad), min(w, d + pad), a, b, c, d)
            for a, b in zip(ys, ys[1:], strict=False) for c, d in zip(xs, xs[1:], strict=False)]


def group_moments(x: torch.Tensor, groups: int, rows: slice, cols: slice) -> Moments:
    """Per-group count, mean and sum of squared deviations of x's core (float64, on x's device)."""
    g = x[:, :, rows, cols].float().reshape(x.shape[0], groups, -1).transpose(0, 1).reshape(groups, -1)
    mean = g.mean(dim=1)
    m2 = ((g - mean[:, None]) ** 2).sum(dim=1)
    return torch.full_like(mean, g.shape[1], dtype=torch.float64), mean.double(), m2.double()


def whole_image(gn: nn.GroupNorm, parts: list[Moments]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Chan's parallel combination of every tile's moments: the statistics of the whole image, exactly
    (up to rounding), the same for every tile."""
    n, means, m2s = (torch.stack(t) for t in zip(*parts, strict=True))
    count = n.sum(0)
    mean = (n * means).sum(0) / count
    m2 = (m2s + n * (means - mean) ** 2).sum(0)
    return [(mean, m2 / count)] * len(parts)


def run_synced(steps: Callable[[torch.Tensor, Callable, Callable], Steps], x: torch.Tensor, cores: list[Core], *,
               scale: float, out_channels: int, park: torch.device | None = None, combine: Combine = whole_image,
               cancel: CancelToken | None = None) -> torch.Tensor:
    """Run the generator forward ``steps`` on every tile of ``x`` [1, C, H, W] in lockstep, sharing
    GroupNorm statistics through ``combine``; ``scale`` is the output/input size ratio."""
    dev = x.device
    keep: Callable[[torch.Tensor], torch.Tensor] = (lambda t: t) if park is None else (lambda t: t.to(park))
    back: Callable[[torch.Tensor], torch.Tensor] = (lambda t: t) if park is None else (lambda t: t.to(dev))
    gens = [steps(x[:, :, c.y0:c.y1, c.x0:c.x1], keep, back) for c in cores]
    stops: list[Any] = [next(g) for g in gens]  # every tile to its first GroupNorm
    out = torch.empty(1, out_channels, round(x.shape[-2] * scale), round(x.shape[-1] * scale),
                      device=dev if park is None else park, dtype=torch.float32)
    while True:
        gn = stops[0][0]
        if any(s[0] is not gn for s in stops):
            raise RuntimeError("tiles left the lockstep: the VAE's forward depends on the input size")
        parts = []
        for c, (_, box) in zip(cores, stops, strict=True):
            act = box[0]
            f = act.shape[-2] / (c.y1 - c.y0)
            rows = slice(round((c.cy0 - c.y0) * f), round((c.cy1 - c.y0) * f))
            cols = slice(round((c.cx0 - c.x0) * f), round((c.cx1 - c.x0) * f))
            parts.append(group_moments(act, gn.num_groups, rows, cols))
            box[0] = keep(act)
        stats = combine(gn, parts)
        finished = 0
        for i, (c, (_, box)) in enumerate(zip(cores, stops, strict=True)):
            if cancel is not None:
                cancel.check()
            try:
                stops[i] = gens[i].send((back(box.pop()), *stats[i]))
            except StopIteration as end:
                finished += 1
                _place(out, end.value, c, scale)
        if finished:
            if finished != len(gens):
                raise RuntimeError("tiles left the lockstep: some finished before the others")
            return out.to(dev)


def _place(out: torch.Tensor, tile: torch.Tensor, c: Core, scale: float) -> None:
    s = scale
    top, bottom = round((c.cy0 - c.y0) * s), round((c.cy1 - c.y0) * s)
    left, right = round((c.cx0 - c.x0) * s), round((c.cx1 - c.x0) * s)
    out[:, :, round(c.cy0 * s):round(c.cy1 * s), round(c.cx0 * s):round(c.cx1 * s)] = \
        tile[:, :, top:bottom, left:right].float()


# ------------------------------------------------------------------------------------- the policy


def untiled_bytes(widths: Sequence[int], h: int, w: int, dtype: torch.dtype, decoder: bool) -> int:
    """Device bytes an untiled pass needs at (h, w) image pixels (an estimate: the widest full-resolution
    layer, WORKING_COPIES times; the decoder's upsampler brings ``widths[1]`` channels to full size).
    On the H200 a FLUX-VAE (same widths) 2048² encode + decode peaked at 9.7 GiB in bf16; this says 10."""
    width = widths[1] if decoder and len(widths) > 1 else widths[0]
    return WORKING_COPIES * width * h * w * torch.empty(0, dtype=dtype).element_size()


@dataclass(frozen=True)
class Tiling:
    tile: int  # px; 0 = untiled
    park: torch.device | None  # where held activations wait between tiles (None: on the device)


def choose_tiling(tile: int, need: int, budget: int) -> tuple[int, bool]:
    """(tile px or 0, park held activations off the device?) for a pass needing ``need`` bytes
    untiled: AUTO tiles only when it does not fit ``budget``; an explicit tile is always honoured."""
    size = (0 if need <= budget else AUTO_TILE) if tile == AUTO else max(0, tile)
    # while tiled, every tile holds about two activations of its layer at a time: 2/5 of ``need``
    return size, bool(size) and need * 2 / WORKING_COPIES > budget // 2


def _plan(module: nn.Module, x: torch.Tensor, tile: int, decoder: bool, budget: int | None) -> Tiling:
    h, w = x.shape[-2:]
    f = 8 if decoder else 1
    widths = tuple(int(b.resnets[-1].conv2.out_channels) for b in
                   (module.down_blocks if not decoder else reversed(list(module.up_blocks))))  # type: ignore[union-attr]
    dtype = next(module.parameters()).dtype
    need = untiled_bytes(widths, h * f, w * f, dtype, decoder)
    size, park = choose_tiling(tile, need, free_memory(x.device) if budget is None else budget)
    return Tiling(size, torch.device("cpu") if park and x.device.type != "cpu" else None)


def encode_moments(vae: AutoencoderKL, encoder: nn.Module, x: torch.Tensor, *, tile: int = AUTO,
                   budget: int | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """quant_conv(encoder(x)) for an image in [-1, 1]; ``encoder`` is SDXL's or SUPIR's denoise encoder.
    ``tile`` in image px (AUTO, 0 = never, or a multiple of 64)."""
    x = x.to(next(encoder.parameters()).dtype)
    plan = _plan(encoder, x, tile, False, budget)
    h, w = x.shape[-2:]
    if plan.tile <= 0 or (h <= plan.tile and w <= plan.tile) or h % 8 or w % 8:
        h = encoder(x)
    else:
        cores = plan_cores(h, w, plan.tile, ENCODER_PAD, 8)
        h = run_synced(lambda t, k, b: encoder_steps(encoder, t, k, b), x, cores, scale=1 / 8,
                              out_channels=2 * vae.config["latent_channels"], park=plan.park, cancel=cancel)
    quant_conv = vae.quant_conv  # SDXL's VAE has one; diffusers skips it when a config leaves it out
    h = h.to(x.dtype)
    return (quant_conv(h) if quant_conv is not None else h).float()


def decode(vae: AutoencoderKL, z: torch.Tensor, *, tile: int = AUTO, budget: int | None = None,
           cancel: CancelToken | None = None) -> torch.Tensor:
    """decoder(post_quant_conv(z)) for an unscaled latent; ``tile`` in image px (AUTO, 0 = never, or a
    multiple of 64)."""
    dec = vae.decoder
    z = z.to(next(dec.parameters()).dtype)
    post = vae.post_quant_conv
    z = post(z) if post is not None else z
    plan = _plan(dec, z, tile, True, budget)
    h, w = z.shape[-2:]
    t = plan.tile // 8
    if t <= 0 or (h <= t and w <= t):
        return dec(z).float()
    cores = plan_cores(h, w, t, DECODER_PAD, 1)
    return run_synced(lambda x, k, b: decoder_steps(dec, x, k, b), z, cores, scale=8,
                      out_channels=vae.config["in_channels"], park=plan.park, cancel=cancel)

