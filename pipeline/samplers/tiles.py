"""SUPIR's tiled diffusion in latent space (``TiledRestoreEDMSampler``, ``TiledRestoreDPMPP2MSampler``):
every step runs the sampler step on overlapping latent tiles, a balanced batch of tiles per model call,
and fuses their results with Gaussian weights (``TiledRun``).

Windows start at 0, S, 2S, ... and one more flush with the far edge (``_sliding_windows``). Unlike
upstream, a side shorter than the tile gets one window of that side's length instead of negative
offsets (kijai/ComfyUI-SUPIR#92 and friends). Weights: w(y, x) = g(x; (T-1)/2) g(y; T/2) with
variance 0.01 T^2, kept in float64 (the y midpoint's half-pixel asymmetry is upstream's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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

    def batches(self, size: int) -> list[list[int]]:
        """Tile indices in as few calls of at most ``size`` tiles as possible, balanced: 9 tiles are
        5 + 4 at size 5 and 3 + 3 + 3 at size 4, never 4 + 4 + 1 (a last call of one tile wastes a step)."""
        n = len(self.windows)
        calls = -(-n // max(1, size))
        small, extra = divmod(n, calls)
        out, start = [], 0
        for c in range(calls):
            end = start + small + (1 if c < extra else 0)
            out.append(list(range(start, end)))
            start = end
        return out

    def on(self, like: torch.Tensor, tile_batch: int) -> TiledRun:
        """This plan ready to run on ``like``'s device: weights and their sum moved there once."""
        return TiledRun(self, like, tile_batch)


def crop(x: torch.Tensor, windows: Sequence[Window]) -> torch.Tensor:
    """Tiles of a [1, C, H, W] tensor stacked along the batch."""
    return torch.cat([x[:, :, a:b, c:d] for a, b, c, d in windows])


StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (windows, **crops) -> (x_next, denoised)


class TiledRun:
    """Runs a sampler step tile batch by tile batch and fuses the results: sum(w * tile) / sum(w).

    The weights (float64: upstream multiplies in float64 and stores in float32) and their per-pixel sum
    stay on the device for the whole run, so a step moves nothing between host and device."""

    def __init__(self, tiles: LatentTiles, like: torch.Tensor, tile_batch: int) -> None:
        self.tiles = tiles
        self.batches = tiles.batches(tile_batch)
        self.w = tiles.weights.to(like.device)
        self.count = torch.zeros_like(like)
        for a, b, c, d in tiles.windows:
            self.count[:, :, a:b, c:d] += self.w

    def __len__(self) -> int:
        return len(self.tiles)

    def step(self, fn: StepFn, inputs: Mapping[str, torch.Tensor | None], *, denoised: bool,
             on_batch: Callable[[list[int]], None] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``fn(windows, **crops of inputs)`` on every batch; returns the fused x_next and, when
        ``denoised``, the fused denoised (DPM++ needs it as its next D_prev; a preview shows it)."""
        like = next(v for v in inputs.values() if v is not None)
        acc_x = torch.zeros_like(like)
        acc_d = torch.zeros_like(like) if denoised else None
        for batch in self.batches:
            wins = [self.tiles.windows[j] for j in batch]
            out, den = fn(wins, **{k: None if v is None else crop(v, wins) for k, v in inputs.items()})
            self._add(acc_x, out, wins)
            if acc_d is not None:
                self._add(acc_d, den, wins)
            if on_batch is not None:
                on_batch(batch)
        return acc_x / self.count, None if acc_d is None else acc_d / self.count

    def _add(self, acc: torch.Tensor, tiles: torch.Tensor, windows: Sequence[Window]) -> None:
        for t, (a, b, c, d) in zip(tiles, windows, strict=True):
            acc[:, :, a:b, c:d] += t[None] * self.w
