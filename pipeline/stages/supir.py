"""SUPIR restore-upscale (stage 1c of the reference workflow): restores the image at its target size
with SDXL steered by SUPIR's control encoder and connectors.

Paper: Yu et al., "Scaling Up to Excellence" (arXiv 2401.13627); reference code Fanghua-Yu/SUPIR and
kijai/ComfyUI-SUPIR; spec ``shared/docs/reference/supir.md``. Weights: an SDXL checkpoint (base 1.0 or a
fine-tune, single file or diffusers folder) plus SUPIR-v0Q or -v0F (non-commercial licence), and the
CLIP vocabulary (see ``pipeline/models/sdxl/text.py``).

Defaults are the reference workflow's Stage 1 (``shared/docs/reference/seed_workflow.md``, kijai's
``SUPIR_sample`` / ``SUPIR_conditioner`` node defaults): DPM++ 2M SDE with Brownian-tree noise, Karras
sigmas, eta 1, s_noise 1.003, 45 steps, CFG 4 -> 4, control 1 -> 1, no restoration guidance, the nodes'
prompts; EDM (s_churn 5) is ``sampler = "edm"``. Sampling and the VAE run untiled when they fit the
device, otherwise in tiles (``pipeline.models.supir.budget``, ``vae_tiled``).

Sizes as SUPIR's test.py: the target size, enlarged so its short side is at least ``min_size``, each
side rounded to ``size_multiple``, refused above the configured ``max_work_pixels``; the result is
resized back to the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import images, previews
from ..config import Config
from ..device import free_memory, parse_dtype
from ..errors import InvalidParameter, WrongWeights
from ..memory_policy import Knob
from ..models.cache import module_bytes
from ..models.placement import Mode, Placement, choose_mode, held_bytes
from ..models.sdxl import text, vae_tiled
from ..models.sdxl.arch import SDXL_LATENT_RGB, SDXL_LATENT_RGB_BIAS
from ..models.supir.budget import SamplerPlan, bytes_per_latent_pixel, plan_sampling
from ..models.supir.denoiser import TextCond
from ..models.supir.pipeline import Settings, SupirModels, load_models, restore, size_vector
from ..progress import Progress
from ..samplers.dpmpp_2m_sde import DpmParams
from ..samplers.edm_euler import EdmParams
from ..samplers.noise import SeededNoise
from ..samplers.report import StepPreview
from .context import StageContext

COST = 10.0  # the heaviest stage of the recipe

# what the memory policy may change when SUPIR runs out of device memory (pipeline/memory_policy.py)
MEMORY_KNOBS = (
    Knob("tile_batch", "batch", phases=("sampling",)),
    Knob("memory", "memory", offload="offload"),
    Knob("tile", "tile", first=128, smallest=32, multiple=8, phases=("sampling",)),
    Knob("vae_tile", "tile", first=vae_tiled.AUTO_TILE, smallest=256, multiple=64, phases=("first_stage", "decode"),
         early=True),
)


@dataclass(frozen=True)
class Params:
    sdxl: str = "sdxl"  # weights name or path: any SDXL checkpoint (.safetensors) or diffusers folder
    supir: str = "supir_v0q"  # supir_v0q, supir_v0f or a path
    sampler: Literal["dpmpp_2m_sde", "edm"] = "dpmpp_2m_sde"  # the workflow's; "edm" if it shows artifacts
    steps: int = 45
    cfg: float = 4.0  # CFG at the end of sampling (SUPIR's s_cfg / cfg_scale_end)
    cfg_start: float = 4.0  # CFG at the start (linear ramp); equal to cfg for a constant scale
    control: float = 1.0  # control scale at the end (SUPIR's s_stage2); 0 = plain SDXL
    control_start: float = 1.0  # ramps linearly from here when it differs from `control`
    s_churn: float = 5.0  # EDM only
    s_noise: float = 1.003
    eta: float = 1.0  # DPM++ only: SDE noise
    restoration: float = -1.0  # EDM only: restoration guidance tau (SUPIR s_stage1); <= 0 off
    prompt: str = ""  # caption (e.g. from a captioner); a_prompt is appended to it with no separator
    a_prompt: str = "high quality, detailed"  # ComfyUI-SUPIR's positive prompt
    n_prompt: str = "bad quality, blurry, messy"
    color_fix: Literal["wavelet", "adain", "none"] = "wavelet"  # docs/supir.md says why
    min_size: int = 1024  # the short side SUPIR works at, at least
    size_multiple: int = 64  # 64 as test.py, 32 as the gradio demo
    tile: int | Literal["auto"] = "auto"  # latent tile for sampling (x8 px): auto = only when it must; 0 = never
    tile_stride: int = 64
    tile_batch: int = 0  # tiles per model call; 0 = as many as the free memory allows (balanced)
    vae_tile: int | Literal["auto"] = "auto"  # px; auto = only when the untiled pass does not fit; 0 = never
    memory: Literal["auto", "resident", "offload", "sequential"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    previews: int = previews.PREVIEWS_PER_STAGE  # x0 thumbnails per run (at least 1 s apart); 0 = none

    def validate(self) -> None:
        if not 1 <= self.steps <= 500:
            raise InvalidParameter(f"supir.steps must be between 1 and 500, not {self.steps}.")
        if self.size_multiple not in (32, 64):
            raise InvalidParameter("supir.size_multiple must be 32 or 64.")
        if self.min_size < self.size_multiple or self.min_size > 4096:
            raise InvalidParameter(f"supir.min_size must be between {self.size_multiple} and 4096.")
        if self.tile != "auto" and self.tile != 0 and (self.tile < 16 or self.tile % 8):
            raise InvalidParameter("supir.tile must be auto, 0 (never tile) or a multiple of 8 of at least 16.")
        if not 8 <= self.tile_stride or (self.tile != "auto" and self.tile and self.tile_stride > self.tile):
            raise InvalidParameter("supir.tile_stride must be at least 8 and at most the tile.")
        if self.vae_tile != "auto" and self.vae_tile != 0 and (self.vae_tile < 256 or self.vae_tile % 64):
            raise InvalidParameter("supir.vae_tile must be auto, 0 (never tile) or a multiple of 64 of at least 256.")
        for name in ("cfg", "cfg_start", "s_noise"):
            if not 0 <= getattr(self, name) <= 30:
                raise InvalidParameter(f"supir.{name} must be between 0 and 30.")
        if not (0 <= self.control <= 2 and 0 <= self.control_start <= 2):
            raise InvalidParameter("supir.control and control_start must be between 0 and 2.")
        if not (0 <= self.s_churn <= 100 and 0 <= self.eta <= 10 and 0 <= self.tile_batch <= 64):
            raise InvalidParameter("supir.s_churn must be 0-100, eta 0-10 and tile_batch 0-64.")
        if not 0 <= self.previews <= 100:
            raise InvalidParameter("supir.previews must be 0-100 (x0 thumbnails per run; 0 = none).")
        if (self.tile != "auto" and self.tile > 1024) or (self.vae_tile != "auto" and self.vae_tile > 8192):
            raise InvalidParameter("supir.tile must be at most 1024 (latent, x8 px) and vae_tile at most 8192.")


def weights(params: Params) -> list[str]:
    return [params.sdxl, params.supir]


def working_size(target: tuple[int, int], min_size: int, multiple: int) -> tuple[int, int]:
    """(h, w) SUPIR samples at for a (h, w) target: short side >= min_size, sides rounded to ``multiple``."""
    h, w = target
    f = max(1.0, min_size / min(h, w))
    return (max(multiple, int(np.round(h * f / multiple)) * multiple),
            max(multiple, int(np.round(w * f / multiple)) * multiple))


def preflight(params: Params, target: tuple[int, int], config: Config) -> None:
    """Refuse a working canvas above the configured limit, before any model loads."""
    h, w = working_size(target, params.min_size, params.size_multiple)
    if h * w > config.max_work_pixels:
        raise InvalidParameter(
            f"SUPIR would work on a {w}x{h} canvas ({w * h:,} pixels) for a {target[1]}x{target[0]} result "
            f"(its short side is enlarged to supir.min_size = {params.min_size}); the limit is "
            f"{config.max_work_pixels:,} pixels (max_work_pixels in the config's [limits]). Choose a smaller "
            "scale or a region with a less extreme shape, or lower supir.min_size.")


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    # 1. Sizes and precision
    target = ctx.target_size
    work = working_size(target, params.min_size, params.size_multiple)
    dtype = parse_dtype(params.precision, ctx.dtype)
    vae_dtype = torch.float32 if dtype == torch.float16 else dtype  # fp16 VAEs give NaNs (upstream refuses)
    src = text.tokenizer_source(ctx.locator, ctx.weights[params.sdxl])

    # 2. Models (kept by the residency cache between jobs) and where they sit
    sdxl_path, supir_path = ctx.weights[params.sdxl], ctx.weights[params.supir]
    models: SupirModels = ctx.models.get(f"supir:{sdxl_path}:{supir_path}:{dtype}:{vae_dtype}",
                                         lambda: load_models(sdxl_path, supir_path, dtype, vae_dtype))
    needs = _needs(models)
    mode = choose_mode(params.memory, ctx.device, resident=needs["resident"], offload=needs["offload"])
    # off CUDA every mode is the same placement: SUPIR skips the offload moves and hooks there
    place = models.placement(mode if ctx.device.type == "cuda" else "resident", ctx.device)
    settings = _settings(params, _sampling_plan(params, work, mode, models, ctx))
    tiling = f"{settings.tile}-latent tiles, up to {settings.tile_batch} per call" if settings.tile else "untiled"
    ctx.log(f"SUPIR at {work[1]}x{work[0]} px, {mode} memory, {dtype}, sampling {tiling}".replace("torch.", ""))
    ctx.using(memory=mode, tile=settings.tile, tile_batch=settings.tile_batch, phase="text")

    try:
        # 3. Text conditioning: caption + a_prompt joined with no separator, as upstream
        cond, uncond = _conditioning(models, src, params, place)
        ctx.cancel.check()

        # 4. Restore: first stage, sampling, decode, colour fix
        lq = images.to_tensor(images.resize_rgb(rgb, work) if rgb.shape[:2] != work else rgb) * 2 - 1

        def progress(p: Progress) -> None:
            tile = f", tile {p.tile}/{p.tiles}" if p.tiles else ""
            ctx.report(p._replace(message=f"SUPIR step {p.step}/{p.steps}{tile}"))

        out = restore(models, lq, cond, uncond, settings, SeededNoise(ctx.seed, ctx.device), place=place,
                      progress=progress, preview=_preview(params), cancel=ctx.cancel,
                      phase=lambda name: ctx.using(phase=name))
    finally:
        place.release()

    # 5. Back to [0, 1] at the target size
    result = images.from_tensor(((out.image.clamp(-1, 1) + 1) / 2).cpu())
    return images.resize_rgb(result, target) if result.shape[:2] != target else result


def _needs(m: SupirModels) -> dict[str, float]:
    """Device bytes per mode for ``choose_mode``: resident = the weights and about 6 GB of work space;
    offload = the diffusion models alone (UNet + control, ~80% of the weights) and 3 GB."""
    need = sum(module_bytes(mod) for mod in m.modules())
    return {"resident": need + (6 << 30), "offload": need * 0.8 + (3 << 30)}


def _sampling_plan(p: Params, work: tuple[int, int], mode: Mode, m: SupirModels,
                   ctx: StageContext) -> SamplerPlan:
    """Tiles and tiles per call from the memory left for activations once the weights this memory mode
    keeps on the device during sampling are counted (all in resident, UNet + control in offload, about
    none in sequential); parts already on the device count as free."""
    parts = m.parts()
    on_device = {"resident": list(parts), "model_offload": ["unet", "control"], "sequential": []}[mode]
    weights = sum(module_bytes(parts[k]) for k in on_device)
    available = max(0, free_memory(ctx.device) + held_bytes(parts, ctx.device) - weights)
    dtype = next(m.unet.parameters()).dtype
    per_pixel = bytes_per_latent_pixel(int(m.unet.unet.config["block_out_channels"][0]), dtype)
    return plan_sampling(work[0] // 8, work[1] // 8, tile=p.tile, tile_batch=p.tile_batch, available=available,
                         per_pixel=per_pixel)


def _preview(p: Params) -> StepPreview | None:
    if p.previews <= 0:
        return None
    schedule = previews.PreviewSchedule(p.steps, per_stage=p.previews, min_interval=previews.MIN_INTERVAL_S)
    return StepPreview(schedule, SDXL_LATENT_RGB, SDXL_LATENT_RGB_BIAS)


def _conditioning(m: SupirModels, src: Path, params: Params, place: Placement) -> tuple[TextCond, TextCond]:
    if m.te1 is None or m.te2 is None:
        raise WrongWeights(m.sdxl_path, "holds no text encoders (conditioner.embedders.*); SUPIR needs SDXL's "
                                        "CLIP-L and OpenCLIP bigG to encode its prompts.")
    tok1, tok2 = text.load_tokenizers(src)
    with place.active("te1", "te2"):
        context, pooled = text.encode(m.te1, m.te2, tok1, tok2, ["".join([params.prompt, params.a_prompt]),
                                                                 params.n_prompt], place.device)
    y = size_vector(pooled, m.unet.unet.add_time_proj)
    return TextCond(context[:1], y[:1]), TextCond(context[1:], y[1:])


def _settings(p: Params, plan: SamplerPlan) -> Settings:
    return Settings(
        sampler=p.sampler,
        steps=p.steps,
        edm=EdmParams(s_churn=p.s_churn, s_noise=p.s_noise, cfg_start=p.cfg_start, cfg_end=p.cfg,
                      control_start=p.control_start, control_end=p.control,
                      linear_control=p.control_start != p.control, restore_cfg=p.restoration),
        dpm=DpmParams(eta=p.eta, s_noise=p.s_noise, cfg_start=p.cfg_start, cfg_end=p.cfg,
                      control_start=p.control_start, control_end=p.control,
                      linear_control=p.control_start != p.control),
        color_fix=p.color_fix,
        tile=plan.tile,
        tile_stride=min(p.tile_stride, plan.tile) if plan.tile else p.tile_stride,
        tile_batch=plan.tile_batch,
        vae_tile=vae_tiled.AUTO if p.vae_tile == "auto" else int(p.vae_tile),
    )
