"""Stage 2 and 3 of the reference workflow: FLUX SRPO img2img over tiles near 1024², seam-free.

SRPO (Tencent Hunyuan, arXiv 2509.06942, github.com/Tencent-Hunyuan/SRPO) is a fine-tune of FLUX.1-dev
that removes its waxy skin. The workflow refines the SUPIR result with it at denoise ~0.3 (stage 2)
and once more at ~0.45 to bring out pores (stage 3): the same engine, ``pipeline.models.flux.engine``,
with other parameters. Steps and denoise mean what ComfyUI's KSampler means by them.

Weights (all local; see docs/flux.md): the SRPO (or FLUX.1-dev) transformer (bf16/fp32, fp8 or GGUF),
``ae.safetensors``, ``clip_l`` and ``t5xxl`` encoders and their two tokenizers; or a diffusers
FLUX.1-dev folder (``base``) supplying every part not named explicitly. Non-commercial licences
(FLUX.1 [dev], SRPO).

Memory: the text encoders are on the device only while the job's prompts are encoded (then retired to
the CPU; the embeddings are cached, stage 3 reuses them); the transformer and the VAE stay as the
memory mode says (``pipeline.models.flux.memory``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import images
from ..device import generator, parse_dtype
from ..errors import InvalidParameter, MissingWeights
from ..memory_policy import Knob
from ..models.flux import engine
from ..models.flux import memory as flux_memory
from ..models.flux.compile import regional_compile
from ..models.flux.embeddings import exact_time_embedding
from ..models.flux.load import load_transformer, load_vae
from ..models.flux.text import (
    Conditioning,
    TextEncoders,
    encode_prompt,
    load_clip,
    load_t5,
    load_tokenizers,
)
from ..models.flux.variant import describe, fp8_policy
from ..models.placement import Placement
from ..previews import PreviewSchedule
from ..samplers.flow_match import SCHEDULERS
from .context import StageContext

DEFAULT_PROMPT = (
    "a high-resolution photograph of a person, natural realistic skin texture with visible pores, fine "
    "vellus hair and subtle imperfections, sharp focus, soft natural light"
)
# parts, their registry key, and their sub-folder in a diffusers FLUX.1-dev folder
PARTS = {
    "transformer": ("flux_transformer", "transformer"),
    "vae": ("flux_vae", "vae"),
    "clip_l": ("flux_clip_l", "text_encoder"),
    "t5": ("flux_t5", "text_encoder_2"),
    "clip_tokenizer": ("flux_clip_tokenizer", "tokenizer"),
    "t5_tokenizer": ("flux_t5_tokenizer", "tokenizer_2"),
}
VAE_AUTO_TILE_PIXELS = 2048 * 2048  # above this, decode in tiles (9.7 GiB peak at 2048² untiled)
# what the memory policy may change when the stage runs out of device memory (pipeline/memory_policy.py)
MEMORY_KNOBS = (
    Knob("tile_batch", "batch", phases=("sampling",)),
    Knob("memory", "memory"),
    Knob("vae_tiling", "switch", value="on", phases=("vae",), early=True),
    Knob("vae_tile", "tile", first=1024, smallest=256, multiple=64, phases=("vae",)),
    Knob("tile", "tile", first=1024, smallest=512, multiple=16),
)


@dataclass(frozen=True)
class Params:
    denoise: float = 0.3  # ComfyUI KSampler denoise: 0.3 ≈ 58% noise at FLUX's shift
    steps: int = 20  # executed steps (the schedule has int(steps / denoise))
    guidance: float = 3.0  # FLUX guidance embedding (FluxGuidance); 2.5–3.5 for SRPO/dev
    true_cfg: float = 1.0  # > 1 and a negative prompt: real CFG, two predictions per step
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = ""
    shift_mu: float = 1.15  # fixed FLUX time shift: every tile gets the schedule of a 1024² image
    scheduler: Literal["simple", "normal", "sgm_uniform", "beta"] = "simple"  # ComfyUI's schedulers
    mode: Literal["multidiffusion", "per_tile"] = "multidiffusion"
    tile: int = 1024  # px, tiles as close to this as the frame allows
    overlap: int = 128  # px, at least; multiple of 16
    rows: int = 0  # 0 = automatic
    cols: int = 0
    tile_batch: int = 4  # tiles per transformer call
    memory: Literal["auto", "resident", "model_offload", "sequential"] = "auto"
    vae_tiling: Literal["auto", "on", "off"] = "auto"
    vae_tile: int = 1024  # px, when the VAE tiles
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    weight_dtype: Literal["auto", "default", "fp8"] = "auto"  # fp8 files: kept fp8 on cards < 30 GiB free
    compile: Literal["auto", "on", "off"] = "auto"  # regional torch.compile; auto: the daemon, on CUDA
    fp32_time_embedding: bool = True  # timestep/guidance embedded from float32 values, as ComfyUI does
    t5_tokens: int = 256  # T5 prompt padded to at least this many tokens (ComfyUI's FLUX), never cut
    resample: float = 1.0  # resize the input by this before refining (the recipe resizes at the end)
    fit_target: bool = False  # first resize the input to the recipe's target size (refine as upscaler)
    base: str = ""  # a diffusers FLUX.1-dev folder (path, or the weights name flux_dev)
    transformer: str = "flux_transformer"  # weights names or paths of each part
    vae: str = "flux_vae"
    clip_l: str = "flux_clip_l"
    t5: str = "flux_t5"
    clip_tokenizer: str = "flux_clip_tokenizer"
    t5_tokenizer: str = "flux_t5_tokenizer"

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise InvalidParameter(f"flux_refine: {msg}")

        if not 1 <= self.steps <= 200:
            bad(f"steps must be 1–200, not {self.steps}.")
        if not 0 < self.denoise <= 1:
            bad(f"denoise must be in (0, 1], not {self.denoise}.")
        if not 0 <= self.guidance <= 20 or not 1 <= self.true_cfg <= 20:
            bad("guidance must be 0–20 and true_cfg 1–20.")
        if self.overlap % 16 or self.overlap < 128:
            bad(f"overlap must be a multiple of 16 of at least 128 px, not {self.overlap}.")
        if self.tile % 16 or self.tile < 2 * self.overlap:
            bad(f"tile must be a multiple of 16 and at least twice the overlap, not {self.tile}.")
        if self.vae_tile % 64 or self.vae_tile < 256:
            bad(f"vae_tile must be a multiple of 64 of at least 256, not {self.vae_tile}.")
        if not (0 <= self.rows <= 64 and 0 <= self.cols <= 64 and 1 <= self.tile_batch <= 64):
            bad("rows and cols must be 0-64 (0 = automatic) and tile_batch 1-64.")
        if self.tile > 8192 or self.vae_tile > 8192:
            bad("tile and vae_tile must be at most 8192 px.")
        if not 0 < self.resample <= 8 or not 0 <= self.shift_mu <= 5:
            bad("resample must be in (0, 8] and shift_mu in [0, 5].")
        if not 1 <= self.t5_tokens <= 512:
            bad(f"t5_tokens must be 1–512 (256 as ComfyUI, 512 as diffusers' FluxPipeline), not {self.t5_tokens}.")
        if self.scheduler not in SCHEDULERS:
            bad(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {self.scheduler!r}.")


def COST(params: Params) -> float:  # the stage interface's name: a share of the progress bar
    return 0.2 * params.steps * (2 if params.true_cfg > 1 and params.negative_prompt else 1)


def _explicit(params: Params, part: str) -> bool:
    """A part named other than by its default key (always the case without a base folder)."""
    return not params.base or getattr(params, part) != PARTS[part][0]


def weights(params: Params) -> list[str]:
    names = [params.base] if params.base else []
    return names + [getattr(params, p) for p in PARTS if _explicit(params, p)]


def part_paths(params: Params, found: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for part, (_key, sub) in PARTS.items():
        if _explicit(params, part):
            out[part] = Path(found[getattr(params, part)])
        else:
            out[part] = Path(found[params.base]) / sub
            if not out[part].exists():
                raise MissingWeights(f"{params.base}/{sub}", f"the {sub}/ part of the FLUX.1-dev folder",
                                     [str(out[part])], hint="Use a complete diffusers FLUX.1-dev folder.")
    return out


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    # 1. Size: an optional resample first (stage 3 after another resize, or refine as the upscaler)
    if params.fit_target and rgb.shape[:2] != ctx.target_size:
        rgb = images.resize_rgb(rgb, ctx.target_size)
    if params.resample != 1.0:
        h, w = rgb.shape[:2]
        rgb = images.resize_rgb(rgb, (max(16, round(h * params.resample)), max(16, round(w * params.resample))))

    # 2. Parts, shared through the model cache (the daemon keeps them between jobs)
    dtype = parse_dtype(params.precision, ctx.dtype)
    paths = part_paths(params, ctx.weights)
    transformer = _transformer(paths["transformer"], params, dtype, ctx)
    vae = ctx.models.get(f"flux.vae:{paths['vae']}:{dtype}", lambda: load_vae(paths["vae"], dtype))
    parts = {"transformer": transformer, "vae": vae}
    prompts = [params.prompt] + ([params.negative_prompt] if params.true_cfg > 1 and params.negative_prompt else [])
    encode = [p for p in prompts if _cond_key(p, params, paths, dtype) not in ctx.models]
    text = _text(paths, dtype, ctx) if encode else None
    mode = flux_memory.choose_memory(params.memory, ctx.device, parts, params.tile_batch,
                                     text={"clip": text.clip, "t5": text.t5} if text else None)
    placement = flux_memory.placement(mode, ctx.device, parts)
    if ctx.device.type == "cuda":
        ctx.log(f"FLUX memory mode: {placement.mode}")
    try:
        # 3. Prompt embeddings, once per job (stage 3 reuses stage 2's); the encoders leave the device after
        if text is not None:
            placement.add(clip=text.clip, t5=text.t5)
        cond = _conditioning(params.prompt, params, paths, dtype, placement, ctx)
        uncond = _conditioning(params.negative_prompt, params, paths, dtype, placement, ctx) if len(prompts) > 1 else None
        placement.retire("clip", "t5")
        # 4. Sample over tiles
        exact_time_embedding(transformer, params.fp32_time_embedding)
        regional_compile(transformer, _compile(params, ctx, placement.mode))
        settings = _settings(params)
        h, w = rgb.shape[:2]
        tiling = params.vae_tiling == "on" or (params.vae_tiling == "auto" and (
            h * w > VAE_AUTO_TILE_PIXELS or placement.mode != "resident"))
        codec = engine.LatentCodec(vae, placement, ctx.device, tiling=tiling, tile=params.vae_tile)
        ctx.using(memory=placement.mode, tile_batch=params.tile_batch, vae_tiling="on" if tiling else "off",
                  vae_tile=params.vae_tile, tile=params.tile)
        velocity = engine.Velocity(transformer, placement, cond, uncond, settings, ctx.device, dtype, ctx.cancel)
        velocity.on_phase = codec.on_phase = lambda name: ctx.using(phase=name)
        out = engine.refine(images.to_tensor(rgb), codec=codec, velocity=velocity, settings=settings,
                            generator=generator(ctx.seed), cancel=ctx.cancel, report=ctx.report,
                            previews=PreviewSchedule(params.steps))
    finally:
        placement.release()
    return images.from_tensor(out)


def _transformer(path: Path, params: Params, dtype: torch.dtype, ctx: StageContext) -> torch.nn.Module:
    """The transformer as ``weight_dtype`` wants it for this file and card (fp8 kept, widened, GGUF)."""
    variant = describe(path, dtype)
    free = None
    if ctx.device.type == "cuda":
        free = torch.cuda.mem_get_info(ctx.device)[0] + ctx.models.device_bytes(ctx.device, "flux.transformer")
    policy, why = fp8_policy(params.weight_dtype, variant, free)
    ctx.log(f"FLUX transformer: {path.name}, {variant.detail}; {why}")
    return ctx.models.get(f"flux.transformer:{path}:{dtype}:{policy}",
                          lambda: load_transformer(path, dtype, fp8=policy))


def _compile(params: Params, ctx: StageContext, mode: str) -> bool:
    """``auto``: on in a long-lived process (the daemon) on CUDA, where the compiled blocks are reused job
    after job; never with sequential offload (its per-layer hooks and compiled graphs do not mix)."""
    if mode == "sequential" or params.compile == "off":
        return False
    return params.compile == "on" or (ctx.models.long_lived and ctx.device.type == "cuda")


def _settings(p: Params) -> engine.RefineSettings:
    names = {f.name for f in fields(engine.RefineSettings)}
    values = {k: getattr(p, k) for k in names if hasattr(p, k)}
    return engine.RefineSettings(**{**values, "mu": p.shift_mu, "rows": p.rows or None, "cols": p.cols or None})


def _sources(paths: dict[str, Path]) -> str:
    return "|".join(str(paths[p]) for p in ("clip_l", "t5", "clip_tokenizer", "t5_tokenizer"))


def _cond_key(prompt: str, params: Params, paths: dict[str, Path], dtype: torch.dtype) -> str:
    text = f"{_sources(paths)}|{dtype}|{params.t5_tokens}|{prompt}"
    return "flux.cond:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _text(paths: dict[str, Path], dtype: torch.dtype, ctx: StageContext) -> TextEncoders:
    return ctx.models.get(f"flux.text:{_sources(paths)}:{dtype}", lambda: _load_text(paths, dtype))


def _conditioning(prompt: str, params: Params, paths: dict[str, Path], dtype: torch.dtype, placement: Placement,
                  ctx: StageContext) -> Conditioning:
    def encode() -> Conditioning:
        return encode_prompt(_text(paths, dtype, ctx), prompt, t5_tokens=params.t5_tokens, device=ctx.device,
                             use=placement.active)

    return ctx.models.get(_cond_key(prompt, params, paths, dtype), encode)


def _load_text(paths: dict[str, Path], dtype: torch.dtype) -> TextEncoders:
    clip_tok, t5_tok = load_tokenizers(paths["clip_tokenizer"], paths["t5_tokenizer"])
    return TextEncoders(clip=load_clip(paths["clip_l"], dtype), t5=load_t5(paths["t5"], dtype),
                        clip_tokenizer=clip_tok, t5_tokenizer=t5_tok)
