"""SUPIR's denoiser: D(x, sigma) from the control encoder + SDXL UNet, with classifier-free guidance
pairs. SGM ``DiscreteDenoiserWithControl`` with ``EpsScaling``: sigma snaps to the nearest of the
1000 training sigmas (its index is the timestep), x_in = x / sqrt(sigma^2 + 1), D = x - sigma * eps.
The control encoder sees the same x_in and timestep as the UNet, and the LQ latent as its hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...samplers.schedules import quantize
from ...samplers.tiles import Window
from .control import ControlEncoder
from .unet import SupirUNet


@dataclass
class TextCond:
    context: torch.Tensor  # [1, 77, context_dim] text tokens (CLIP-L || bigG penultimate states)
    vector: torch.Tensor  # [1, adm] pooled bigG + size embeddings


def denoise(unet: SupirUNet, control: ControlEncoder | None, table: torch.Tensor, x: torch.Tensor,
            sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor, hint: torch.Tensor,
            scale: float) -> torch.Tensor:
    """One network pass: D for each row of ``x`` (float32 in, float32 out)."""
    sigma_q, idx = quantize(sigma, table)
    s = sigma_q.view(-1, 1, 1, 1)
    c_in = 1 / (s**2 + 1.0) ** 0.5
    x_in = x * c_in
    feats = control(hint, idx, x_in, context, y) if (control is not None and scale != 0) else None
    eps = unet(x_in, idx, context, y, feats, scale).float()
    return eps * -s + x  # c_out = -sigma, c_skip = 1


class CfgDenoiser:
    """Runs the [uncond, cond] pair in one batch for every row of ``x`` (rows may be tiles, whose LQ
    latent crops are taken from ``windows``). Returns (D_uncond, D_cond).

    The text conditioning moves to ``z_lq``'s device once, and its CFG batch is built once per batch
    size, so a sampler step copies nothing between host and device."""

    def __init__(self, unet: SupirUNet, control: ControlEncoder, table: torch.Tensor, cond: TextCond,
                 uncond: TextCond, z_lq: torch.Tensor) -> None:
        dev = z_lq.device
        self.unet, self.control, self.table = unet, control, table.to(dev)
        self.cond = TextCond(cond.context.to(dev), cond.vector.to(dev))
        self.uncond = TextCond(uncond.context.to(dev), uncond.vector.to(dev))
        self.z_lq = z_lq
        self._text: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.calls = 0

    def text(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(context, vector) for a CFG batch of ``n`` rows: n uncond rows, then n cond rows."""
        if n not in self._text:
            u, c = self.uncond, self.cond
            self._text[n] = (torch.cat([u.context.expand(n, -1, -1), c.context.expand(n, -1, -1)]),
                             torch.cat([u.vector.expand(n, -1), c.vector.expand(n, -1)]))
        return self._text[n]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, scale: float,
                 windows: Sequence[Window] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        if windows is None:
            hint = self.z_lq.expand(n, -1, -1, -1) if self.z_lq.shape[0] == 1 else self.z_lq
        else:
            hint = torch.cat([self.z_lq[:, :, a:b, c:d] for a, b, c, d in windows])
        context, y = self.text(n)
        sigma = sigma.reshape(-1).expand(n) if sigma.numel() == 1 else sigma
        d = denoise(self.unet, self.control, self.table, torch.cat([x, x]), torch.cat([sigma, sigma]),
                    context, y, torch.cat([hint, hint]), scale)
        self.calls += 1
        return d[:n], d[n:]
