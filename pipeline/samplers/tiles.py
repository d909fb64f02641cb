"""SUPIR's tiled diffusion in latent space (``TiledRestoreEDMSampler``): every step runs the sampler
step on overlapping latent tiles and fuses their results with Gaussian weights.

Windows start at 0, S, 2S, ... and one more flush with the far edge (``_sliding_windows``). Unlike
upstream, a side shorter than the tile gets one window of that side's length instead of negative
offsets (kijai/ComfyUI-SUPIR#92 and friends). Weights: w(y, x) = g(x; (T-1)/2) g(y; T/2) with
variance 0.01 T^2, kept in float64 (the y midpoint's half-pixel asymmetry is upstream's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

Window = tuple[int, int, int, int]  # hi, hi_end, wi, wi_end


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if (length - tile) % stride:
        starts.append(length - tile)
    return starts


def sliding_windows(h: int, w: int, tile: int, stride: int) -> list[Window]:
    th, tw = min(tile, h), min(tile, w)
    return [(hi, hi + th, wi, wi + tw) for hi in _starts(h, tile, stride) for wi in _starts(w, tile, stride)]


def gaussian_weights(tile_w: int, tile_h: int) -> torch.Tensor:
    """[tile_h, tile_w] float64 weight map (upstream ``gaussian_weights``)."""
    var = 0.01

    def probs(n: int, mid: float) -> torch.Tensor:
        u = torch.arange(n, dtype=torch.float64)
        return torch.exp(-(u - mid) * (u - mid) / (n * n) / (2 * var)) / math.sqrt(2 * math.pi * var)

    return torch.outer(probs(tile_h, tile_h / 2), probs(tile_w, (tile_w - 1) / 2))


@dataclass(frozen=True)
class LatentTiles:
    windows: tuple[Window, ...]
    weights: torch.Tensor  # [tile_h, tile_w] float64

    @classmethod
    def plan(cls, h: int, w: int, tile: int = 128, stride: int = 64) -> LatentTiles | None:
        """None when one tile covers the latent (then the plain sampler runs: same result)."""
        if h <= tile and w <= tile:
            return None
        if not 0 < stride <= tile:
            raise ValueError(f"tile stride must be in 1..{tile}, not {stride}")
        windows = sliding_windows(h, w, tile, stride)
        th, tw = windows[0][1] - windows[0][0], windows[0][3] - windows[0][2]
        return cls(tuple(windows), gaussian_weights(tw, th))

    def __len__(self) -> int:
        return len(self.windows)

    def batches(self, size: int) -> Iterator[list[int]]:
        idx = list(range(len(self.windows)))
        for i in range(0, len(idx), max(1, size)):
            yield idx[i : i + size]


def crop(x: torch.Tensor, windows: Sequence[Window]) -> torch.Tensor:
    """Tiles of a [1, C, H, W] tensor stacked along the batch."""
    return torch.cat([x[:, :, a:b, c:d] for a, b, c, d in windows])


class Fuse:
    """Accumulates weighted tile results into full-size buffers: sum(w * tile) / sum(w)."""

    def __init__(self, like: torch.Tensor, weights: torch.Tensor) -> None:
        self.acc = torch.zeros_like(like)
        self.count = torch.zeros_like(like)
        self.w = weights.to(like.device)  # float64: upstream multiplies in float64, stores in float32

    def add(self, tiles: torch.Tensor, windows: Sequence[Window]) -> None:
        for t, (a, b, c, d) in zip(tiles, windows, strict=True):
            self.acc[:, :, a:b, c:d] += t[None] * self.w
            self.count[:, :, a:b, c:d] += self.w

    def result(self) -> torch.Tensor:
        return self.acc / self.count
