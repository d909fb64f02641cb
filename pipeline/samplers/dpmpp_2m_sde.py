"""DPM++ 2M SDE as SUPIR runs it for Lightning/Turbo SDXL checkpoints (Fanghua-Yu/SUPIR
``RestoreDPMPP2MSampler`` / ``TiledRestoreDPMPP2MSampler``), on the Karras grid of
``schedules.lightning_sigmas``.

With t = -log sigma, h = t' - t and eta_h = eta * h:
  D = D_u + w(sigma) (D_c - D_u)
  x_std = (sigma'/sigma) e^(-eta_h) x - expm1(-h - eta_h) D
  first step, or sigma' = 0:  x = x_std                (no SDE noise on the first step, unlike k-diffusion)
  else: r = h_prev / h; D2 = (1 + 1/(2r)) D - (1/(2r)) D_prev
        x = (sigma'/sigma) e^(-eta_h) x - expm1(-h - eta_h) D2 + s_noise sigma' sqrt(-expm1(-2 eta_h)) xi
Upstream draws xi from a Brownian tree; its normalised increments over the disjoint step intervals
are independent standard normals, which is what ``noise("sde", ...)`` gives here. No churn and no
restoration guidance (ComfyUI-SUPIR forces them off for DPM++); the control-scale ramp is honoured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..progress import CancelToken, Progress, ProgressFn
from .model import PairDenoiser
from .noise import NoiseSource
from .schedules import cfg_scale, control_scale
from .tiles import Fuse, LatentTiles, Window, crop


@dataclass(frozen=True)
class DpmParams:
    eta: float = 1.0
    s_noise: float = 1.003
    cfg_start: float = 2.0
    cfg_end: float = 2.0
    control_start: float = 1.0
    control_end: float = 1.0
    linear_control: bool = False


def step(model: PairDenoiser, x: torch.Tensor, old: torch.Tensor | None, prev_sigma: float | None, sigma: float,
         next_sigma: float, xi: torch.Tensor | None, p: DpmParams, scale: float,
         windows: Sequence[Window] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on a batch of rows; returns (x_next, D) (D is the next step's D_prev)."""
    sig = torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)
    d_u, d_c = model(x, sig, scale, windows)
    denoised = d_u + cfg_scale(sig, p.cfg_start, p.cfg_end).view(-1, 1, 1, 1) * (d_c - d_u)
    if next_sigma == 0:
        return denoised, denoised
    t, t_next = -math.log(sigma), -math.log(next_sigma)
    h = t_next - t
    eta_h = p.eta * h
    mult1 = next_sigma / sigma * math.exp(-eta_h)
    mult2 = math.expm1(-h - eta_h)
    if old is None or prev_sigma is None:
        return mult1 * x - mult2 * denoised, denoised
    r = (t - (-math.log(prev_sigma))) / h
    d2 = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
    x = mult1 * x - mult2 * d2
    if p.eta and xi is not None:
        x = x + xi * next_sigma * math.sqrt(-math.expm1(-2 * eta_h)) * p.s_noise
    return x, denoised


def sample(
    model: PairDenoiser,
    x_T: torch.Tensor,
    sigmas: torch.Tensor,
    p: DpmParams,
    *,
    # sampling inputs
    noise: NoiseSource,
    tiles: LatentTiles | None = None,
    tile_batch: int = 1,
    # reporting
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """``model(x, sigma, control_scale, windows) -> (D_uncond, D_cond)``; ``sigmas`` descending to 0."""
    x = x_T * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    values = [float(s) for s in sigmas]
    n = len(values) - 1
    old: torch.Tensor | None = None
    for k, (sigma, next_sigma) in enumerate(zip(values[:-1], values[1:], strict=True)):
        if cancel is not None:
            cancel.check()
        prev = values[k - 1] if k > 0 else None
        xi = noise("sde", x.shape) if k > 0 and next_sigma > 0 else None
        scale = control_scale(sigma, p.control_start, p.control_end, p.linear_control)
        if tiles is None:
            x, old = step(model, x, old, prev, sigma, next_sigma, xi, p, scale)
        else:
            fx, fd = Fuse(x, tiles.weights), Fuse(x, tiles.weights)
            for batch in tiles.batches(tile_batch):
                if cancel is not None:
                    cancel.check()
                wins = [tiles.windows[j] for j in batch]
                out, den = step(model, crop(x, wins), None if old is None else crop(old, wins), prev, sigma,
                                next_sigma, None if xi is None else crop(xi, wins), p, scale, wins)
                fx.add(out, wins)
                fd.add(den, wins)
                if progress is not None:
                    progress(Progress("", k, n, batch[-1] + 1, len(tiles)))
            x, old = fx.result(), fd.result()
        if progress is not None:
            progress(Progress("", k + 1, n, len(tiles) if tiles else 0, len(tiles) if tiles else 0))
    return x
