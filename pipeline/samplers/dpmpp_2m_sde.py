"""DPM++ 2M SDE as SUPIR runs it (Fanghua-Yu/SUPIR and kijai/ComfyUI-SUPIR ``RestoreDPMPP2MSampler`` /
``TiledRestoreDPMPP2MSampler``): the reference workflow's Stage 1 sampler, on ``schedules.dpm_schedule``.

With t = -log sigma, h = t' - t and eta_h = eta * h:
  D = D_u + w(sigma) (D_c - D_u)                       the network sees sigma snapped to the table;
  x_std = (sigma'/sigma) e^(-eta_h) x - expm1(-h - eta_h) D      w and the update use the Karras sigma
  first step, or sigma' = 0:  x = x_std                (no SDE noise on the first step, unlike k-diffusion)
  else: r = h_prev / h; D2 = (1 + 1/(2r)) D - (1/(2r)) D_prev
        x = (sigma'/sigma) e^(-eta_h) x - expm1(-h - eta_h) D2 + s_noise sigma' sqrt(-expm1(-2 eta_h)) xi
xi comes from a Brownian tree over the legacy grid's [sigma_min, sigma_max] (``noise.sde``), as upstream.
x_T is scaled by the legacy sigma_max. Tiled: one full-size xi per step, every tile takes the step on its
crop, and both the tile results and the tiles' D are fused (the fused D is the next step's D_prev).
No churn and no restoration guidance (ComfyUI-SUPIR forces them off for DPM++); the control-scale
ramp is honoured (kijai's copy has it; with the workflow's constant 1.0 it does nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..progress import CancelToken, ProgressFn
from .edm_euler import ParityRecord, tagged
from .model import PairDenoiser
from .noise import NoiseSource
from .report import StepPreview, StepReport
from .schedules import DpmSchedule, cfg_scale, control_scale
from .tiles import LatentTiles, Window


@dataclass(frozen=True)
class DpmParams:
    eta: float = 1.0
    s_noise: float = 1.003
    cfg_start: float = 4.0
    cfg_end: float = 4.0
    control_start: float = 1.0
    control_end: float = 1.0
    linear_control: bool = False


def step(model: PairDenoiser, x: torch.Tensor, old: torch.Tensor | None, prev_sigma: float | None, sigma: float,
         next_sigma: float, xi: torch.Tensor | None, p: DpmParams, scale: float,
         windows: Sequence[Window] | None = None,
         record: ParityRecord | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on a batch of rows; returns (x_next, D) (D is the next step's D_prev)."""
    sig = torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)
    d_u, d_c = model(x, sig, scale, windows)
    w = cfg_scale(sig, p.cfg_start, p.cfg_end)
    denoised = d_u + w.view(-1, 1, 1, 1) * (d_c - d_u)
    if next_sigma == 0:
        out = denoised
    else:
        t, t_next = -math.log(sigma), -math.log(next_sigma)
        h = t_next - t
        eta_h = p.eta * h
        mult1 = next_sigma / sigma * math.exp(-eta_h)
        mult2 = math.expm1(-h - eta_h)
        if old is None or prev_sigma is None:
            out = mult1 * x - mult2 * denoised
        else:
            r = (t - (-math.log(prev_sigma))) / h
            d2 = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            out = mult1 * x - mult2 * d2
            if p.eta and xi is not None:
                out = out + xi * next_sigma * math.sqrt(-math.expm1(-2 * eta_h)) * p.s_noise
    if record is not None:
        record({"sigma": sig, "next_sigma": next_sigma, "previous_sigma": prev_sigma, "cfg_scale": w,
                "control_scale": scale, "denoised_uncond": d_u, "denoised_cond": d_c, "denoised_cfg": denoised,
                "x_in": x, "x_out": out})
    return out, denoised


def sample(
    model: PairDenoiser,
    x_T: torch.Tensor,
    schedule: DpmSchedule,
    p: DpmParams,
    *,
    # sampling inputs
    noise: NoiseSource,
    tiles: LatentTiles | None = None,
    tile_batch: int = 1,
    # reporting
    progress: ProgressFn | None = None,
    preview: StepPreview | None = None,
    cancel: CancelToken | None = None,
    parity_record: ParityRecord | None = None,
) -> torch.Tensor:
    """``model(x, sigma, control_scale, windows) -> (D_uncond, D_cond)``; ``x_T`` unit variance."""
    record = parity_record
    x = x_T * torch.sqrt(1.0 + torch.tensor(schedule.sigma_max) ** 2.0)  # float32, as upstream
    values = [float(s) for s in schedule.sigmas]
    n = len(values) - 1
    # every step's noise before the loop, on x's device: the loop never waits for the host
    sde = noise.sde(x.shape, schedule.sigma_min, schedule.sigma_max, x.device)
    xis = [sde(values[k], values[k + 1]) if 0 < k and values[k + 1] > 0 else None for k in range(n)]
    run = tiles.on(x, tile_batch) if tiles is not None else None
    report = StepReport(progress, preview, n, len(tiles) if tiles else 0)
    old: torch.Tensor | None = None
    for k in range(n):
        if cancel is not None:
            cancel.check()
        sigma, next_sigma, prev = values[k], values[k + 1], values[k - 1] if k > 0 else None
        scale = control_scale(sigma, p.control_start, p.control_end, p.linear_control)
        want = report.wants_preview(k)
        if run is None:
            x, old = step(model, x, old, prev, sigma, next_sigma, xis[k], p, scale, None,
                          tagged(record, step=k, tile=None))
        else:
            if record is not None:
                record({"step": k, "tile": "full", "x_full_in": x, "old_denoised_full_in": old})

            def tile_step(wins: list[Window], x: torch.Tensor, old: torch.Tensor | None, xi: torch.Tensor | None,
                          k: int = k, sigma: float = sigma, next_sigma: float = next_sigma,
                          prev: float | None = prev, scale: float = scale) -> tuple[torch.Tensor, torch.Tensor]:
                return step(model, x, old, prev, sigma, next_sigma, xi, p, scale, wins,
                            tagged(record, step=k, tile=wins))

            fused_x, fused_d = run.step(tile_step, {"x": x, "old": old, "xi": xis[k]}, denoised=True,
                                        on_batch=lambda b, k=k: report.batch_done(k, b))
            x, old = fused_x, fused_d
        report.step_done(k, old if want else None)
    return x
