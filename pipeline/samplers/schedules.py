"""Noise schedules and the per-step ramps SUPIR's samplers use.

- The SDXL/SD training schedule: 1000 DDPM steps, betas linear in sqrt space 0.00085..0.012,
  sigma_t = sqrt((1 - abar_t) / abar_t); sigma_999 = 14.6146 = SIGMA_MAX. Computed in float64 and
  rounded to float32 as SGM's ``LegacyDDPMDiscretization`` does, so the table matches it bit for bit.
- ``legacy_sigmas(n)``: SGM's n-step grid t_k = floor(999 - k*999/n) (not diffusers' "trailing" for
  every n), descending, with 0 appended.
- ``karras_sigmas`` / ``dpm_schedule``: k-diffusion's Karras schedule (rho 7) as SUPIR's DPM++ 2M SDE
  sampler (the workflow's default) builds it from the legacy grid's end points.
- ``quantize``: a sigma snaps to the nearest table entry; its index is the timestep the UNet sees.
- ``cfg_scale`` / ``control_scale``: SUPIR's linear ramps from a value at SIGMA_MAX to one at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SIGMA_MAX = 14.6146  # SGM hard-codes this rounded sigma_999 in its ramps and restoration guidance
NUM_TIMESTEPS = 1000


def ddpm_sigma_table(beta_start: float = 0.00085, beta_end: float = 0.012,
                     steps: int = NUM_TIMESTEPS) -> torch.Tensor:
    """sigma_t for t = 0..steps-1 (ascending), float32."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    abar = np.cumprod(1.0 - betas.numpy(), axis=0)
    return torch.tensor((1 - abar) / abar, dtype=torch.float32) ** 0.5


def legacy_timesteps(n: int, steps: int = NUM_TIMESTEPS) -> np.ndarray:
    """SGM's roughly equally spaced timesteps, ascending (n=4: 249, 499, 749, 999)."""
    return np.linspace(steps - 1, 0, n, endpoint=False).astype(int)[::-1]


def legacy_sigmas(n: int, table: torch.Tensor | None = None) -> torch.Tensor:
    """n-step descending grid of table sigmas with 0 appended (n+1 values, float32)."""
    if not 1 <= n < NUM_TIMESTEPS:
        raise ValueError(f"steps must be between 1 and {NUM_TIMESTEPS - 1}, not {n}")
    table = ddpm_sigma_table() if table is None else table
    sig = table[torch.from_numpy(legacy_timesteps(n).copy())]
    return torch.cat([sig.flip(0), sig.new_zeros(1)])


def karras_sigmas(n: int, sigma_min: float | torch.Tensor, sigma_max: float | torch.Tensor,
                  rho: float = 7.0) -> torch.Tensor:
    """k-diffusion ``get_sigmas_karras`` (n values from sigma_max down to sigma_min, then 0), in float32
    with the end points as float32 tensors, as SUPIR's samplers call it (so the grid matches bit for bit)."""
    smin = torch.as_tensor(sigma_min, dtype=torch.float32)
    smax = torch.as_tensor(sigma_max, dtype=torch.float32)
    ramp = torch.linspace(0, 1, n)
    min_inv, max_inv = smin ** (1 / rho), smax ** (1 / rho)
    sig = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


@dataclass(frozen=True)
class DpmSchedule:
    """What SUPIR's DPM++ sampler runs on (upstream ``RestoreDPMPP2MSampler.__call__``): a Karras grid
    between the n-step legacy grid's smallest non-zero sigma and its largest. The legacy end points
    themselves scale x_T (sqrt(1 + sigma_max^2)) and bound the Brownian tree; they differ from the
    Karras grid's ends in the last float32 bits."""

    sigmas: torch.Tensor  # n + 1 Karras sigmas ending in 0, float32
    sigma_min: float
    sigma_max: float


def dpm_schedule(n: int, table: torch.Tensor | None = None) -> DpmSchedule:
    legacy = legacy_sigmas(n, table)
    return DpmSchedule(karras_sigmas(n, legacy[-2], legacy[0]), float(legacy[-2]), float(legacy[0]))


def quantize(sigma: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest table sigma, its index) for each sigma; SGM ``DiscreteDenoiser`` snapping."""
    table = table.to(sigma.device)
    idx = (sigma.reshape(1, -1) - table[:, None]).abs().argmin(dim=0).view(sigma.shape)
    return table[idx], idx


def cfg_scale(sigma: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """SGM ``LinearCFG``: ``start`` at SIGMA_MAX to ``end`` at 0 (not clamped: a churned sigma above
    SIGMA_MAX extrapolates). start == end gives constant CFG."""
    return (start - end) * sigma / SIGMA_MAX + end


def control_scale(sigma: float, start: float, end: float, linear: bool) -> float:
    """SUPIR's control-scale ramp on the un-churned sigma (off: constant ``end``)."""
    if not linear:
        return end
    return (sigma / SIGMA_MAX) * (start - end) + end
