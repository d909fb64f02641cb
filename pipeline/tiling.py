"""Tile plans, blend weights and assembly.

A plan splits a frame into rows x cols equal tiles whose size is as close as possible to a target
(1024 for Flux, 512 for spandrel models), with at least ``overlap`` pixels shared between neighbours.
Assembly blends tiles with separable ramps over each overlap. It composites tiles one after another
as ``canvas += (tile - canvas) * w_i / sum(w_<=i)``, which is the normalised weighted average, but written
as a lerp so that tiles that agree give back exactly their common value: an identity model through any
plan returns its input bit for bit, and a constant prediction fused over tiles stays that constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .errors import InvalidParameter

BlendKind = Literal["cosine", "linear"]


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    col: int
    y: int
    x: int
    h: int
    w: int
    # overlap shared with the neighbour on each side; 0 at the frame border
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    overlap: int  # the requested minimum; real overlaps are in each Tile
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def scaled(self, factor: float) -> TilePlan:
        """The same plan in another resolution (model output scale, or 1/8 for latents).

        Every coordinate must map to an integer, otherwise tiles would no longer meet exactly.
        """

        def s(v: int) -> int:
            r = v * factor
            if abs(r - round(r)) > 1e-9:
                raise InvalidParameter(
                    f"tile coordinate {v} does not scale to an integer by {factor}; "
                    "plan with a 'multiple' that the scale divides."
                )
            return int(round(r))

        tiles = tuple(
            Tile(t.index, t.row, t.col, s(t.y), s(t.x), s(t.h), s(t.w),
                 s(t.top), s(t.bottom), s(t.left), s(t.right))
            for t in self.tiles
        )
        return TilePlan(s(self.height), s(self.width), self.rows, self.cols, s(self.tile_h),
                        s(self.tile_w), s(self.overlap), tiles)


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


def _axis_size(length: int, n: int, overlap: int, multiple: int) -> int:
    return min(length, _ceil_to(-(-(length + (n - 1) * overlap) // n), multiple))


def _axis_starts(length: int, n: int, size: int, multiple: int) -> list[int]:
    if n == 1:
        return [0]
    starts = [(round(i * (length - size) / (n - 1)) // multiple) * multiple for i in range(n - 1)]
    return starts + [length - size]


def _fit_axis(length: int, n: int, overlap: int, multiple: int) -> tuple[int, int, list[int]]:
    """n tiles over ``length``: (n, size, starts), n dropping to 1 if one tile covers everything."""
    if n == 1:
        return 1, length, [0]
    size = _axis_size(length, n, overlap, multiple)
    # snapping starts down to `multiple` can eat into the overlap: grow the tile until every pair
    # of neighbours shares at least `overlap` pixels
    while True:
        starts = _axis_starts(length, n, size, multiple)
        shared = [starts[i] + size - starts[i + 1] for i in range(n - 1)]
        if min(shared) >= overlap or size >= length:
            break
        size = min(length, size + multiple)
    if size >= length:
        return 1, length, [0]
    return n, size, starts


def _plan_axis(
    length: int, target: int, overlap: int, multiple: int, n: int | None
) -> tuple[int, int, list[int]]:
    if n is not None:
        if n < 1:
            raise InvalidParameter(f"tile count must be at least 1, got {n}.")
        return _fit_axis(length, n, overlap, multiple)
    if length <= target:
        return 1, length, [0]
    # one tile of the whole length is a candidate too: 1088 px is closer to 1024 than 2 x 608
    upper = math.ceil(length / max(1, target - overlap)) + 2
    fits = [_fit_axis(length, k, overlap, multiple) for k in range(1, upper)]
    return min(fits, key=lambda f: (abs(f[1] - target), f[0]))


def plan_tiles(
    height: int,
    width: int,
    *,
    tile: int = 1024,
    overlap: int = 128,
    multiple: int = 16,
    rows: int | None = None,
    cols: int | None = None,
) -> TilePlan:
    """Split a frame into rows x cols tiles of equal size close to ``tile`` (multiples of ``multiple``).

    A side no longer than ``tile`` is one tile of the full length. Tile origins are multiples of
    ``multiple`` except the last one, which sits flush with the border (aligned too when the frame
    length is itself a multiple). Every pixel is covered; neighbours share at least ``overlap`` px.
    """
    if height < 1 or width < 1:
        raise InvalidParameter(f"cannot tile an empty frame ({width}x{height}).")
    if multiple < 1 or tile < multiple:
        raise InvalidParameter(f"tile size {tile} must be at least the multiple {multiple}.")
    if not 0 <= overlap < tile:
        raise InvalidParameter(f"overlap {overlap} must be in [0, tile size {tile}).")
    n_rows, th, ys = _plan_axis(height, tile, overlap, multiple, rows)
    n_cols, tw, xs = _plan_axis(width, tile, overlap, multiple, cols)
    tiles = []
    for r, y in enumerate(ys):
        for c, x in enumerate(xs):
            top = ys[r - 1] + th - y if r > 0 else 0
            bottom = y + th - ys[r + 1] if r < n_rows - 1 else 0
            left = xs[c - 1] + tw - x if c > 0 else 0
            right = x + tw - xs[c + 1] if c < n_cols - 1 else 0
            tiles.append(Tile(len(tiles), r, c, y, x, th, tw, top, bottom, left, right))
    return TilePlan(height, width, n_rows, n_cols, th, tw, overlap, tuple(tiles))


# ------------------------------------------------------------------------------------------ weights


def _ramp(n: int, start: int, end: int, kind: BlendKind) -> torch.Tensor:
    """1-D weight over n pixels rising across the first ``start`` and falling across the last ``end``."""
    w = torch.ones(n, dtype=torch.float64)
    pos = torch.arange(n, dtype=torch.float64)
    for width, d in ((start, pos), (end, n - 1 - pos)):
        if width > 0:
            r = torch.clamp((d + 0.5) / width, max=1.0)
            w = w * (r if kind == "linear" else 0.5 - 0.5 * torch.cos(math.pi * r))
    return w


def tile_weight(tile: Tile, kind: BlendKind = "cosine") -> torch.Tensor:
    """(h, w) float64 weight of one tile: 1 inside, ramping to ~0 across shared overlaps."""
    if kind not in ("cosine", "linear"):
        raise InvalidParameter(f"blend must be 'cosine' or 'linear', not {kind!r}.")
    wy = _ramp(tile.h, tile.top, tile.bottom, kind)
    wx = _ramp(tile.w, tile.left, tile.right, kind)
    return wy[:, None] * wx[None, :]


def blend_weights(plan: TilePlan, kind: BlendKind = "cosine") -> torch.Tensor:
    """(N, 1, th, tw) float64 weights for every tile of the plan."""
    return torch.stack([tile_weight(t, kind) for t in plan.tiles])[:, None]


# ------------------------------------------------------------------------------- crop and assemble


def crop_tiles(x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """(B, C, H, W) -> (N*B, C, th, tw), tiles in plan order (all tiles of a plan share one size)."""
    if tuple(x.shape[-2:]) != (plan.height, plan.width):
        raise InvalidParameter(
            f"frame is {tuple(x.shape[-2:])} but the plan is for {(plan.height, plan.width)}."
        )
    return torch.cat([x[..., ys, xs] for ys, xs in (t.slices() for t in plan.tiles)], dim=0)


class Assembler:
    """Blends tiles into a frame one at a time, so tiles can arrive as they are computed."""

    def __init__(
        self,
        plan: TilePlan,
        channels: int,
        *,
        batch: int = 1,
        blend: BlendKind = "cosine",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.plan = plan
        # ``weights``: the plan's blend_weights already on the device (a sampler reuses them every step)
        self.weights = (blend_weights(plan, blend) if weights is None else weights).to(device=device,
                                                                                       dtype=torch.float32)
        self.canvas = torch.zeros(batch, channels, plan.height, plan.width, device=device, dtype=dtype)
        self._acc = torch.zeros(1, 1, plan.height, plan.width, device=device, dtype=torch.float32)
        self._done: set[int] = set()

    def add(self, index: int, tile: torch.Tensor) -> None:
        t = self.plan.tiles[index]
        ys, xs = t.slices()
        if tuple(tile.shape[-2:]) != (t.h, t.w):
            raise InvalidParameter(f"tile {index} is {tuple(tile.shape[-2:])}, expected {(t.h, t.w)}.")
        w = self.weights[index : index + 1]
        acc = self._acc[..., ys, xs] + w
        self._acc[..., ys, xs] = acc
        alpha = (w / acc).to(self.canvas.dtype)
        region = self.canvas[..., ys, xs]
        self.canvas[..., ys, xs] = region + (tile.to(region.dtype) - region) * alpha
        self._done.add(index)

    def result(self) -> torch.Tensor:
        missing = set(range(len(self.plan))) - self._done
        if missing:
            raise RuntimeError(f"tiles {sorted(missing)} were never added")
        return self.canvas


def assemble(
    tiles: torch.Tensor | Sequence[torch.Tensor],
    plan: TilePlan,
    *,
    blend: BlendKind = "cosine",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N*B, C, th, tw) tiles (plan order, as from crop_tiles) -> (B, C, H, W) blended frame.
    ``weights``: the plan's ``blend_weights`` when the caller keeps them (on the tiles' device)."""
    n = len(plan)
    if isinstance(tiles, torch.Tensor):
        if tiles.shape[0] % n:
            raise InvalidParameter(f"{tiles.shape[0]} tiles do not fit a plan of {n}.")
        chunks = list(tiles.split(tiles.shape[0] // n, dim=0))
    else:
        chunks = list(tiles)
    asm = Assembler(plan, chunks[0].shape[1], batch=chunks[0].shape[0], blend=blend,
                    device=chunks[0].device, dtype=chunks[0].dtype, weights=weights)
    for i, t in enumerate(chunks):
        asm.add(i, t)
    return asm.result()
