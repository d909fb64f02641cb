"""SUPIR's EDM Euler sampler with churn, restoration guidance, and linear CFG and control-scale ramps
(Fanghua-Yu/SUPIR ``RestoreEDMSampler`` / ``TiledRestoreEDMSampler``): upstream's default, and the
reference workflow's advice against artifacts (``supir.sampler = "edm"``; DPM++ is Dermis's default).

Per step k (sigma -> next_sigma):
  gamma = min(s_churn / N, sqrt2 - 1) if s_tmin <= sigma <= s_tmax else 0
  sigma_hat = sigma (1 + gamma); if gamma > 0: x += s_noise * xi * sqrt(sigma_hat^2 - sigma^2)
  D = D_u + w(sigma_hat) (D_c - D_u)                 w ramps cfg_start (sigma_max) -> cfg_end (0)
  if next_sigma > restore_s_tmin and restore_cfg > 0:
      D -= (D - x_center) (sigma / sigma_max)^restore_cfg      (un-churned sigma)
  x += (x - D) / sigma_hat * (next_sigma - sigma_hat)
The model is evaluated at the churned sigma_hat (diffusers' EulerDiscreteScheduler adds its churn
after the evaluation, which is a different sampler, hence this loop). Tiled: one shared noise field
per step, every tile takes a full step on its crop, results fused with Gaussian weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..progress import CancelToken, ProgressFn
from .model import PairDenoiser
from .noise import NoiseSource
from .report import StepPreview, StepReport
from .schedules import SIGMA_MAX, cfg_scale, control_scale
from .tiles import LatentTiles, Window

# Test-only hook: the parity tests compare every intermediate of every step (and tile) with the
# reference sampler's recording. Not a progress channel; production code never passes one.
ParityRecord = Callable[[dict[str, Any]], None]


def tagged(record: ParityRecord | None, **tags: Any) -> ParityRecord | None:
    """``record`` adding ``tags`` (step, tile) to every entry; None when there is no record."""
    if record is None:
        return None
    return lambda entry: record({**tags, **entry})


@dataclass(frozen=True)
class EdmParams:
    s_churn: float = 5.0
    s_noise: float = 1.003
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    cfg_start: float = 4.0  # at sigma_max
    cfg_end: float = 4.0  # at sigma 0 (SUPIR's "cfg_scale"; the workflow keeps it constant)
    control_start: float = 1.0
    control_end: float = 1.0
    linear_control: bool = False
    restore_cfg: float = -1.0  # restoration guidance tau; <= 0 is off (every upstream default)
    restore_s_tmin: float = 0.05


def step(model: PairDenoiser, x: torch.Tensor, sigma: float, next_sigma: float, gamma: float,
         xi: torch.Tensor | None, p: EdmParams, scale: float, x_center: torch.Tensor | None,
         windows: Sequence[Window] | None = None,
         record: ParityRecord | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``sampler_step`` on a batch of rows (whole latent, or tiles cut at ``windows``); returns
    (x_next, the guided x0 estimate D)."""
    n = x.shape[0]
    x_in = x
    sig = torch.full((n,), sigma, dtype=torch.float32, device=x.device)
    nxt = torch.full((n,), next_sigma, dtype=torch.float32, device=x.device)
    sigma_hat = sig * (gamma + 1.0)
    if gamma > 0 and xi is not None:
        x = x + (xi * p.s_noise) * ((sigma_hat**2 - sig**2) ** 0.5).view(-1, 1, 1, 1)
    d_u, d_c = model(x, sigma_hat, scale, windows)
    denoised = d_u + cfg_scale(sigma_hat, p.cfg_start, p.cfg_end).view(-1, 1, 1, 1) * (d_c - d_u)
    cfg_out = denoised
    if next_sigma > p.restore_s_tmin and p.restore_cfg > 0 and x_center is not None:
        denoised = denoised - (denoised - x_center) * ((sig.view(-1, 1, 1, 1) / SIGMA_MAX) ** p.restore_cfg)
    d = (x - denoised) / sigma_hat.view(-1, 1, 1, 1)
    out = x + (nxt - sigma_hat).view(-1, 1, 1, 1) * d
    if record is not None:
        record({"sigma": sig, "next_sigma": nxt, "gamma": gamma, "sigma_hat": sigma_hat, "control_scale": scale,
                "x_in": x_in, "x_churned": x, "denoised_cfg": cfg_out, "x_out": out})
    return out, denoised


def sample(
    model: PairDenoiser,
    x_T: torch.Tensor,
    sigmas: torch.Tensor,
    p: EdmParams,
    *,
    # sampling inputs
    noise: NoiseSource,
    x_center: torch.Tensor | None = None,
    tiles: LatentTiles | None = None,
    tile_batch: int = 1,
    # reporting
    progress: ProgressFn | None = None,
    preview: StepPreview | None = None,
    cancel: CancelToken | None = None,
    parity_record: ParityRecord | None = None,
) -> torch.Tensor:
    """Run the sampler from unit-variance ``x_T`` [1, C, h, w] over ``sigmas`` (descending, ending in
    0). ``model(x, sigma_hat, control_scale, windows) -> (D_uncond, D_cond)``."""
    record = parity_record
    if p.restore_cfg > 0 and x_center is None:
        raise ValueError("restoration guidance needs x_center")
    x = x_T * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    n = len(sigmas) - 1
    values = [float(s) for s in sigmas]
    gammas = [min(p.s_churn / n, 2**0.5 - 1) if p.s_tmin <= s <= p.s_tmax else 0.0 for s in values[:-1]]
    # every churn draw before the loop, on x's device: the loop never waits for the host
    xis = [noise("churn", x.shape).to(x.device) if g > 0 else None for g in gammas]
    run = tiles.on(x, tile_batch) if tiles is not None else None
    report = StepReport(progress, preview, n, len(tiles) if tiles else 0)
    for k in range(n):
        if cancel is not None:
            cancel.check()
        sigma, next_sigma, gamma = values[k], values[k + 1], gammas[k]
        scale = control_scale(sigma, p.control_start, p.control_end, p.linear_control)
        want = report.wants_preview(k)
        if run is None:
            x, x0 = step(model, x, sigma, next_sigma, gamma, xis[k], p, scale, x_center, None,
                         tagged(record, step=k, tile=None))
        else:
            if record is not None:
                record({"step": k, "tile": "full", "x_full_in": x})

            def tile_step(wins: list[Window], x: torch.Tensor, xi: torch.Tensor | None, center: torch.Tensor | None,
                          k: int = k, sigma: float = sigma, next_sigma: float = next_sigma, gamma: float = gamma,
                          scale: float = scale) -> tuple[torch.Tensor, torch.Tensor]:
                return step(model, x, sigma, next_sigma, gamma, xi, p, scale, center, wins,
                            tagged(record, step=k, tile=wins))

            x, x0 = run.step(tile_step, {"x": x, "xi": xis[k], "center": x_center}, denoised=want,
                             on_batch=lambda b, k=k: report.batch_done(k, b))
        report.step_done(k, x0 if want else None)
    return x
