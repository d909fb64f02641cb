"""The model call SUPIR's samplers make: both classifier-free-guidance branches in one go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from .tiles import Window


class PairDenoiser(Protocol):
    """``(x, sigma, control_scale, windows) -> (D_uncond, D_cond)`` for every row of ``x`` (the whole
    latent, or tiles cut at ``windows``); ``sigma`` has one value per row."""

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, scale: float,
                 windows: Sequence[Window] | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...
