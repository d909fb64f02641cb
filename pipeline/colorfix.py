"""Colour correction of a restored image against a reference (SUPIR applies it against its stage-1
image, in [-1, 1], at working resolution). Same maths as SUPIR's ``SUPIR/utils/colorfix.py`` (from
StableSR): Wavelet keeps the result's high frequencies and takes the reference's low frequencies
(5-level a-trous blur: 3x3 binomial kernel dilated 1, 2, 4, 8, 16, replicate padding); AdaIN matches
each channel's mean and standard deviation. Computed in float32 (upstream's bf16 path fails, kijai#3).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

ColorFix = Literal["wavelet", "adain", "none"]


def _blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    k = torch.tensor([[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]],
                     dtype=x.dtype, device=x.device)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), groups=c, dilation=radius)


def _decompose(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    high = torch.zeros_like(x)
    for i in range(levels):
        low = _blur(x, 2**i)
        high += x - low  # summed level by level, as upstream (same value as x0 - low, other rounding)
        x = low
    return high, low


def wavelet(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    return _decompose(content)[0] + _decompose(style)[1]


def _mean_std(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    return flat.mean(dim=2).reshape(b, c, 1, 1), (flat.var(dim=2) + eps).sqrt().reshape(b, c, 1, 1)


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    s_mean, s_std = _mean_std(style)
    c_mean, c_std = _mean_std(content)
    return (content - c_mean) / c_std * s_std + s_mean


def color_fix(content: torch.Tensor, style: torch.Tensor, kind: ColorFix) -> torch.Tensor:
    content, style = content.float(), style.float()
    if kind == "wavelet":
        return wavelet(content, style)
    if kind == "adain":
        return adain(content, style)
    return content
