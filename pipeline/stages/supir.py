"""SUPIR restore-upscale (stage 1c of the reference workflow): restores the image at its target size
with SDXL steered by SUPIR's control encoder and connectors.

Paper: Yu et al., "Scaling Up to Excellence" (arXiv 2401.13627); reference code Fanghua-Yu/SUPIR and
kijai/ComfyUI-SUPIR; spec ``shared/docs/reference/supir.md``. Weights: an SDXL checkpoint (base 1.0 or a
fine-tune, single file or diffusers folder) plus SUPIR-v0Q or -v0F (non-commercial licence), and the
CLIP vocabulary (see ``pipeline/models/sdxl/text.py``).

Sizes as SUPIR's test.py: the target size, enlarged so its short side is at least ``min_size``, each
side rounded to ``size_multiple``; the result is resized back to the target. Sampling runs in 128-latent
tiles (1024 px, stride 64) when the image is larger; the VAE runs in tiles too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import images
from ..device import parse_dtype
from ..errors import InvalidParameter, OutOfMemory
from ..models.placement import Placement, choose_mode
from ..models.sdxl import text
from ..models.supir.denoiser import TextCond
from ..models.supir.pipeline import Settings, SupirModels, load_models, restore, size_vector
from ..progress import Progress
from ..samplers.dpmpp_2m_sde import DpmParams
from ..samplers.edm_euler import EdmParams
from ..samplers.noise import SeededNoise
from .context import StageContext

COST = 10.0  # the heaviest stage of the recipe

# SUPIR's defaults (options/SUPIR_v0.yaml, test.py): appended to the caption with no separator.
A_PROMPT = ("Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - "
            "realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore "
            "detailing, hyper sharpness, perfect without deformations.")
N_PROMPT = ("painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
            "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
            "jpeg artifacts, deformed, lowres, over-smooth")


@dataclass(frozen=True)
class Params:
    sdxl: str = "sdxl"  # weights name or path: any SDXL checkpoint (.safetensors) or diffusers folder
    supir: str = "supir_v0q"  # supir_v0q, supir_v0f or a path
    sampler: Literal["edm", "dpmpp_2m_sde"] = "edm"  # DPM++ 2M SDE for Lightning checkpoints
    steps: int = 45
    cfg: float = 7.5  # CFG at the end of sampling (SUPIR's s_cfg)
    cfg_start: float = 4.0  # CFG at the start (linear ramp); equal to cfg for a constant scale
    control: float = 1.0  # control scale at the end (SUPIR's s_stage2); 0 = plain SDXL
    control_start: float = 1.0  # ramps linearly from here when it differs from `control`
    s_churn: float = 5.0
    s_noise: float = 1.003
    eta: float = 1.0  # DPM++ SDE noise
    restoration: float = -1.0  # restoration guidance tau (SUPIR s_stage1); <= 0 off as upstream
    prompt: str = ""  # caption (e.g. from a captioner); a_prompt is appended to it
    a_prompt: str = A_PROMPT
    n_prompt: str = N_PROMPT
    color_fix: Literal["wavelet", "adain", "none"] = "wavelet"
    min_size: int = 1024  # the short side SUPIR works at, at least
    size_multiple: int = 64  # 64 as test.py, 32 as the gradio demo
    tile: int = 128  # latent tile for sampling (x8 px)
    tile_stride: int = 64
    tile_batch: int = 0  # tiles per model call; 0 = 4 when resident on a GPU, else 1
    vae_tile: int = 1024  # px; 0 = never tile the VAE
    memory: Literal["auto", "resident", "offload", "sequential"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    def validate(self) -> None:
        if not 1 <= self.steps <= 500:
            raise InvalidParameter(f"supir.steps must be between 1 and 500, not {self.steps}.")
        if self.size_multiple not in (32, 64):
            raise InvalidParameter("supir.size_multiple must be 32 or 64.")
        if self.min_size < self.size_multiple or self.min_size > 4096:
            raise InvalidParameter(f"supir.min_size must be between {self.size_multiple} and 4096.")
        if self.tile < 16 or self.tile % 8 or not 8 <= self.tile_stride <= self.tile:
            raise InvalidParameter("supir.tile must be a multiple of 8 (>= 16) and 8 <= tile_stride <= tile.")
        if self.vae_tile and (self.vae_tile < 256 or self.vae_tile % 64):
            raise InvalidParameter("supir.vae_tile must be 0 or a multiple of 64 of at least 256.")
        for name in ("cfg", "cfg_start", "s_noise"):
            if not 0 <= getattr(self, name) <= 30:
                raise InvalidParameter(f"supir.{name} must be between 0 and 30.")
        if not (0 <= self.control <= 2 and 0 <= self.control_start <= 2):
            raise InvalidParameter("supir.control and control_start must be between 0 and 2.")
        if not (0 <= self.s_churn <= 100 and 0 <= self.eta <= 10 and 0 <= self.tile_batch <= 64):
            raise InvalidParameter("supir.s_churn must be 0-100, eta 0-10 and tile_batch 0-64.")
        if self.tile > 1024 or self.vae_tile > 8192:
            raise InvalidParameter("supir.tile must be at most 1024 (latent, x8 px) and vae_tile at most 8192.")


def weights(params: Params) -> list[str]:
    return [params.sdxl, params.supir]


def working_size(target: tuple[int, int], min_size: int, multiple: int) -> tuple[int, int]:
    """(h, w) SUPIR samples at for a (h, w) target: short side >= min_size, sides rounded to ``multiple``."""
    h, w = target
    f = max(1.0, min_size / min(h, w))
    return (max(multiple, int(np.round(h * f / multiple)) * multiple),
            max(multiple, int(np.round(w * f / multiple)) * multiple))


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    # 1. Sizes and precision
    target = ctx.target_size
    work = working_size(target, params.min_size, params.size_multiple)
    dtype = parse_dtype(params.precision, ctx.dtype)
    vae_dtype = torch.float32 if dtype == torch.float16 else dtype  # fp16 VAEs give NaNs (upstream refuses)
    src = text.tokenizer_source(ctx.locator, ctx.weights[params.sdxl])

    # 2. Models (kept by the residency cache between jobs)
    sdxl_path, supir_path = ctx.weights[params.sdxl], ctx.weights[params.supir]
    models: SupirModels = ctx.models.get(
        f"supir:{sdxl_path}:{supir_path}:{dtype}:{vae_dtype}:{params.memory}",
        lambda: load_models(sdxl_path, supir_path, dtype, vae_dtype))
    needs = _needs(models)
    mode = choose_mode(params.memory, ctx.device, resident=needs["resident"], offload=needs["offload"])
    # off CUDA every mode is the same placement: SUPIR skips the offload moves and hooks there
    place = models.placement(mode if ctx.device.type == "cuda" else "resident", ctx.device)
    tile_batch = params.tile_batch or (4 if ctx.device.type == "cuda" and mode == "resident" else 1)
    ctx.log(f"SUPIR at {work[1]}x{work[0]} px, {mode} memory, {dtype}".replace("torch.", ""))

    # 3. Text conditioning: caption + a_prompt joined with no separator, as upstream
    cond, uncond = _conditioning(models, src, params, place)
    ctx.cancel.check()

    # 4. Restore: first stage, tiled sampling, decode, colour fix
    lq = images.to_tensor(images.resize_rgb(rgb, work) if rgb.shape[:2] != work else rgb) * 2 - 1
    settings = _settings(params, tile_batch)

    def progress(p: Progress) -> None:
        tile = f", tile {p.tile}/{p.tiles}" if p.tiles else ""
        ctx.report(p._replace(message=f"SUPIR step {p.step}/{p.steps}{tile}"))

    try:
        out = restore(models, lq, cond, uncond, settings, SeededNoise(ctx.seed, ctx.device), place=place,
                      progress=progress, cancel=ctx.cancel)
    except torch.OutOfMemoryError:
        raise OutOfMemory("SUPIR ran out of device memory; try --set supir.memory=offload (or sequential), "
                          "a smaller supir.tile_batch or supir.vae_tile=512.") from None
    finally:
        place.release()

    # 5. Back to [0, 1] at the target size
    result = images.from_tensor(((out.image.clamp(-1, 1) + 1) / 2).cpu())
    return images.resize_rgb(result, target) if result.shape[:2] != target else result


def _needs(m: SupirModels) -> dict[str, float]:
    """Device bytes per mode for ``choose_mode``: resident = the weights and about 6 GB of work space;
    offload = the diffusion models alone (UNet + control, ~80% of the weights) and 3 GB."""
    need = sum(p.numel() * p.element_size() for mod in m.modules() for p in mod.parameters())
    return {"resident": need + (6 << 30), "offload": need * 0.8 + (3 << 30)}


def _conditioning(m: SupirModels, src: Path, params: Params, place: Placement) -> tuple[TextCond, TextCond]:
    if m.te1 is None or m.te2 is None:
        from ..errors import WrongWeights

        raise WrongWeights(m.sdxl_path, "holds no text encoders (conditioner.embedders.*); SUPIR needs SDXL's "
                                        "CLIP-L and OpenCLIP bigG to encode its prompts.")
    tok1, tok2 = text.load_tokenizers(src)
    with place.active("te1", "te2"):
        context, pooled = text.encode(m.te1, m.te2, tok1, tok2, ["".join([params.prompt, params.a_prompt]),
                                                                 params.n_prompt], place.device)
    y = size_vector(pooled, m.unet.unet.add_time_proj)
    return TextCond(context[:1], y[:1]), TextCond(context[1:], y[1:])


def _settings(p: Params, tile_batch: int) -> Settings:
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
        tile=p.tile,
        tile_stride=p.tile_stride,
        tile_batch=tile_batch,
        vae_tile=p.vae_tile,
        vae_decode_tile=p.vae_tile // 8,
    )
