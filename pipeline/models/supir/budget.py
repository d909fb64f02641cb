"""How SUPIR's sampling fits the device: untiled when the whole latent fits, otherwise tiles in balanced
batches sized from the free memory, in every memory mode.

The reference workflow samples 2048² untiled (16 s for 45 steps on an H200); tiling saves memory, not
time (kijai#36), so Dermis tiles only when it must. The activation estimate below is not a measurement
(no GPU here); ``bench/bench_supir_gpu.py`` prints the real peak to calibrate it. An estimate that is too
low is caught by the out-of-memory policy (``pipeline.memory_policy``), which moves to fewer tiles per
call, then offload, then smaller tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Device bytes per latent pixel of one CFG row (SDXL UNet + control encoder, SDPA attention), in units of
# the UNet's first width times the element size: the skip and control features (~1680 channels per pixel
# summed over the levels, twice), a level's working tensors and the connectors' full-resolution maps.
# SDXL in bf16: 48 x 320 x 2 B = 30 KB per pixel and row, 4 GB for a 2048² image's 256² latent with CFG.
ACTIVATION_WIDTHS = 48
DEFAULT_TILE = 128  # latent px (1024 px) when auto tiling must tile: SUPIR's, and SDXL's training size


def bytes_per_latent_pixel(first_width: int, dtype: torch.dtype) -> int:
    """Activation bytes per latent pixel of a CFG pair (two rows)."""
    return 2 * ACTIVATION_WIDTHS * first_width * torch.empty(0, dtype=dtype).element_size()


@dataclass(frozen=True)
class SamplerPlan:
    tile: int  # latent px; 0 = untiled
    tile_batch: int  # most tiles per model call (the sampler balances the batches under it)


def plan_sampling(h: int, w: int, *, tile: int | str, tile_batch: int, available: int,
                  per_pixel: int) -> SamplerPlan:
    """``tile``: "auto", 0 (never) or a latent tile size; ``tile_batch``: 0 = as many as fit;
    ``available``: device bytes left for activations once the weights this memory mode keeps there are
    counted; ``per_pixel``: ``bytes_per_latent_pixel``."""
    if tile == "auto":
        size = 0 if h * w * per_pixel <= available or (h <= DEFAULT_TILE and w <= DEFAULT_TILE) else DEFAULT_TILE
    else:
        size = int(tile)
    if size <= 0 or (h <= size and w <= size):
        return SamplerPlan(0, 1)
    if tile_batch > 0:
        return SamplerPlan(size, tile_batch)
    per_tile = min(size, h) * min(size, w) * per_pixel
    return SamplerPlan(size, max(1, available // max(1, per_tile)))
