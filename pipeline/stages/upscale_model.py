"""Upscale (or restore) with any model spandrel loads, in tiles: the workflow's "Upscale Image (using
Model)" node, used by the `supir-srpo` preset for the 1x SkinDiffDetail model.

As in ComfyUI (comfy_extras/nodes_upscale_model.py): 512 px tiles with 32 px overlap, feathered blend,
and on out-of-memory the tile size halves down to 128 (through ``pipeline.memory_policy``, after one tile
per call). Any scale: the recipe resizes the result to its target afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .. import images
from ..device import parse_dtype
from ..errors import InvalidParameter
from ..memory_policy import Knob
from ..models.spandrel_loader import load_image_model
from ..tiling import Assembler, crop_tiles, plan_tiles
from .context import StageContext

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

COST = 1.0
MIN_TILE = 128
MEMORY_KNOBS = (Knob("batch", "batch"), Knob("tile", "tile", first=512, smallest=MIN_TILE))


@dataclass(frozen=True)
class Params:
    model: str = "skin_detail"  # a weights name (see `dermis doctor`) or a path to a .pth/.safetensors
    tile: int = 512
    overlap: int = 32
    batch: int = 4  # tiles per model call
    blend: float = 1.0  # 1 = model output only; less mixes the input back in (ComfyUI ImageBlend)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    def validate(self) -> None:
        if self.tile < 32 or not 0 <= self.overlap < self.tile // 2:
            raise InvalidParameter("upscale_model: tile must be >= 32 and overlap < tile / 2.")
        if self.tile > 8192 or not 1 <= self.batch <= 64:
            raise InvalidParameter("upscale_model: tile must be at most 8192 and batch 1-64.")
        if not 0 <= self.blend <= 1:
            raise InvalidParameter("upscale_model.blend must be between 0 and 1.")


def weights(params: Params) -> list[str]:
    return [params.model]


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    path = ctx.weights[params.model]
    dtype = parse_dtype(params.precision, ctx.dtype)
    key = f"spandrel:{path}:{ctx.device}:{dtype}"
    desc = ctx.models.get(key, lambda: load_image_model(path, ctx.device, dtype))
    ctx.using(batch=params.batch, tile=params.tile)
    out = _tiled(desc, rgb, params.tile, params, ctx)
    if params.blend < 1:
        base = images.resize_rgb(rgb, out.shape[:2]) if out.shape[:2] != rgb.shape[:2] else rgb
        out = (base + (out - base) * params.blend).astype(np.float32)
    return out


def _tiled(desc: ImageModelDescriptor, rgb: np.ndarray, tile: int, params: Params, ctx: StageContext) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = desc.scale
    plan = plan_tiles(h, w, tile=tile, overlap=min(params.overlap, tile // 4), multiple=1)
    asm = Assembler(plan.scaled(scale), 3)
    tiles = crop_tiles(images.to_tensor(rgb), plan)
    model_dtype = next(desc.model.parameters()).dtype
    n = len(plan)
    for start in range(0, n, params.batch):
        ctx.cancel.check()
        chunk = tiles[start : start + params.batch].to(ctx.device, model_dtype)
        with torch.inference_mode():
            out = desc(chunk).float().cpu()  # spandrel pads to the arch's size rules and crops back
        for i in range(out.shape[0]):
            asm.add(start + i, out[i : i + 1])
        done = min(start + params.batch, n)
        ctx.progress(done, n, message=f"{desc.architecture.name} tile {done}/{n}")
    return images.from_tensor(asm.result())
