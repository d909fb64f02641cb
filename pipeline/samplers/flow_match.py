"""Flow-matching (rectified flow) sampling for FLUX.1, with ComfyUI's KSampler step semantics.

Schedules are ComfyUI's so that a preset's ``steps``/``denoise`` mean what they mean in the reference
workflow (comfy/samplers.py ``KSampler.set_steps``, ``simple_scheduler``, ``normal_scheduler`` (also
``sgm_uniform``: the same with sgm=True), ``beta_scheduler``; comfy/model_sampling.py
``ModelSamplingFlux``, whose table holds sigma(t) for t = 1/10000 … 1 and whose timestep is sigma):

- ``steps`` S are the steps *executed*; at ``denoise`` d < 1 the schedule is built for int(S/d) steps
  and its last S+1 sigmas are kept, so denoise moves the start point, not the cost
  ((20, 0.30) -> 66-step schedule; diffusers' strength would run 6 steps instead).
- FLUX's time shift is fixed at mu = 1.15 (ComfyUI's default without a ModelSamplingFlux node), so
  every tile sees the schedule of a 1024² image whatever its size. Because the shift comes before the
  truncation, "denoise 0.3" starts at sigma ~0.58.

The Euler step is x += (sigma_next - sigma) * v with the model's velocity v, identical to ComfyUI's
``sample_euler`` on a CONST (flow) model and to diffusers' FlowMatchEulerDiscreteScheduler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from ..errors import InvalidParameter
from ..progress import CancelToken, Progress, ProgressFn
from .beta_ppf import beta_ppf

Scheduler = Literal["simple", "normal", "sgm_uniform", "beta"]
SCHEDULERS: tuple[Scheduler, ...] = ("simple", "normal", "sgm_uniform", "beta")
BETA_ALPHA = BETA_BETA = 0.6  # ComfyUI's beta_scheduler defaults
TABLE_SIZE = 10000  # ModelSamplingFlux tabulates sigma at t = 1/10000 … 1
DEFAULT_MU = 1.15


def flux_time_shift(mu: float, t: torch.Tensor) -> torch.Tensor:
    """sigma(t) = e^mu / (e^mu + (1/t - 1)): FLUX's resolution shift, here with a fixed mu."""
    return math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))


def _table(mu: float) -> torch.Tensor:
    t = torch.arange(1, TABLE_SIZE + 1, 1) / TABLE_SIZE  # float32, as ComfyUI builds it
    return flux_time_shift(mu, t)


def full_sigmas(steps: int, mu: float = DEFAULT_MU, scheduler: Scheduler = "simple") -> torch.Tensor:
    """A whole schedule of ``steps`` steps (steps+1 sigmas from ~1 down to 0), float32."""
    table = _table(mu)
    if scheduler == "simple":
        stride = len(table) / steps
        sigs = [float(table[-(1 + int(i * stride))]) for i in range(steps)]
    elif scheduler in ("normal", "sgm_uniform"):
        # ComfyUI: linspace over model timesteps, which for FLUX are the (already shifted) sigmas;
        # sgm_uniform spaces steps+1 points and drops the last (sigma_min) instead
        start, end = float(table[-1]), float(table[0])
        ts = torch.linspace(start, end, steps) if scheduler == "normal" else torch.linspace(start, end, steps + 1)[:-1]
        sigs = [float(flux_time_shift(mu, t)) for t in ts]
    elif scheduler == "beta":
        # ComfyUI: table entries at the Beta(0.6, 0.6) quantiles of 1 - i/steps, repeats dropped
        last = len(table) - 1
        picks = [round(beta_ppf(1.0 - i / steps, BETA_ALPHA, BETA_BETA) * last) for i in range(steps)]
        picks = [t for i, t in enumerate(picks) if i == 0 or t != picks[i - 1]]
        sigs = [float(table[t]) for t in picks]
    else:
        raise InvalidParameter(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}.")
    return torch.tensor([*sigs, 0.0], dtype=torch.float32)


def comfy_sigmas(steps: int, denoise: float, mu: float = DEFAULT_MU,
                 scheduler: Scheduler = "simple") -> torch.Tensor:
    """The S+1 sigmas a ComfyUI KSampler(steps=S, denoise=d) runs through."""
    if steps < 1:
        raise InvalidParameter(f"steps must be at least 1, not {steps}.")
    if not 0 < denoise <= 1:
        raise InvalidParameter(f"denoise must be in (0, 1], not {denoise}.")
    if denoise > 0.9999:
        sigmas = full_sigmas(steps, mu, scheduler)
    else:
        sigmas = full_sigmas(int(steps / denoise), mu, scheduler)[-(steps + 1):]
    if len(sigmas) != steps + 1:  # the whole point of this module: never silently run fewer steps
        raise AssertionError(f"schedule has {len(sigmas) - 1} steps, expected {steps}")
    return sigmas


def schedule_length(steps: int, denoise: float) -> int:
    """How many steps the full schedule has that the executed ones are cut from (int(S/d))."""
    return steps if denoise > 0.9999 else int(steps / denoise)


def noise_latents(latents: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """The img2img start point: the flow interpolation sigma * noise + (1 - sigma) * image."""
    return sigma * noise + (1.0 - sigma) * latents


ModelFn = Callable[[torch.Tensor, float], torch.Tensor]


def sample_euler(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """Euler over ``sigmas``; ``model_fn(x, sigma)`` returns the velocity (noise - image direction).

    Returns the sample at the last sigma (0: the clean image). ``x`` stays float32 throughout, whatever
    precision the model runs in, so bf16 rounding does not accumulate over the steps.
    """
    steps = len(sigmas) - 1
    x = x.float()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True)):
        if cancel is not None:
            cancel.check()
        v = model_fn(x, sigma).float()
        x = x + (sigma_next - sigma) * v
        if progress is not None:
            progress(Progress("", i + 1, steps))
    return x
