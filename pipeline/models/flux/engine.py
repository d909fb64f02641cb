"""The FLUX refine engine behind stage 2 and stage 3: img2img over tiles near 1024², two ways.

``multidiffusion`` (default): one VAE encode of the whole frame, one noise field, and at every step
the transformer runs on all tiles (batched); its velocity predictions are fused with smooth ramps
over the overlaps (``pipeline.tiling``), then one Euler step moves the whole latent and one decode
ends it. Every tile sees the schedule of a 1024² image (fixed shift) and its own positions, as in
the reference workflow, but neighbours agree at every step, so there is no seam to hide. Because
assembly is an exact lerp, a model predicting the same value everywhere gives the untiled result bit
for bit (the seam tests rely on it).

``per_tile`` (parity with ComfyUI's TTP tile workflow): independent img2img per tile, each tile VAE-
encoded on its own, with its noise cropped from one full-frame noise field, decoded on its own and
cross-faded linearly over the overlap in pixel space.

Both use ComfyUI's KSampler step semantics (``pipeline.samplers.flow_match``), FLUX's guidance
embedding, and optional true CFG with a negative prompt (two predictions per tile per step).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from ...previews import PreviewSchedule, latent_to_rgb
from ...progress import CancelToken, Progress, ProgressFn, no_progress
from ...samplers.flow_match import Scheduler, comfy_sigmas, noise_latents, sample_euler
from ...tiling import Assembler, TilePlan, assemble, blend_weights, crop_tiles, plan_tiles
from ..placement import Placement
from .arch import LATENT_CHANNELS, LATENT_RGB, LATENT_RGB_BIAS
from .text import Conditioning

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

log = logging.getLogger("dermis.flux")

Mode = Literal["multidiffusion", "per_tile"]
VAE_FACTOR = 8
MULTIPLE = 16  # 8x VAE and 2x2 latent packing: FLUX frames and tiles are multiples of 16 px


@dataclass(frozen=True)
class RefineSettings:
    steps: int = 20
    denoise: float = 0.3
    guidance: float = 3.0
    true_cfg: float = 1.0  # > 1 with a negative prompt: real classifier-free guidance
    mu: float = 1.15
    scheduler: Scheduler = "simple"
    mode: Mode = "multidiffusion"
    tile: int = 1024
    overlap: int = 128
    rows: int | None = None
    cols: int | None = None
    tile_batch: int = 4


# -------------------------------------------------------------------------------- latent codec


class LatentCodec:
    """FLUX's autoencoder: pixels in [0, 1] <-> its scaled, shifted 16-channel latents (float32).

    ``tiling`` makes diffusers' AutoencoderKL work in ``tile``-px tiles (large frames, lean memory
    modes). Out of memory is ``pipeline.memory_policy``'s business (it turns tiling on, then shrinks it).
    """

    def __init__(self, vae: AutoencoderKL, placement: Placement | None, device: torch.device | str, tiling: bool,
                 tile: int = 1024) -> None:
        self.vae, self.placement, self.device, self.tiling = vae, placement, torch.device(device), tiling
        self.tile = tile
        self.on_phase: Callable[[str], None] = lambda name: None  # told "vae" (the memory policy's phase)

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        def enc(vae: AutoencoderKL) -> torch.Tensor:
            # the distribution's mean: deterministic, no extra noise on top of the sampler's
            z = vae.encode((rgb * 2 - 1).to(self.device, vae.dtype), return_dict=False)[0].mode()
            return (z.float() - vae.config["shift_factor"]) * vae.config["scaling_factor"]

        return self._run(enc)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        def dec(vae: AutoencoderKL) -> torch.Tensor:
            scale, shift = vae.config["scaling_factor"], vae.config["shift_factor"]
            x = vae.decode((z / scale + shift).to(self.device, vae.dtype), return_dict=False)[0]
            return ((x.float() + 1) / 2).clamp(0, 1)

        return self._run(dec)

    @torch.inference_mode()
    def _run(self, fn: Callable[[AutoencoderKL], torch.Tensor]) -> torch.Tensor:
        self.on_phase("vae")
        with self.placement.active("vae") if self.placement is not None else nullcontext():
            return fn(self._ready())

    def _ready(self) -> AutoencoderKL:
        vae = self.vae
        if self.tiling:
            vae.enable_tiling()
            vae.tile_sample_min_size = self.tile
            vae.tile_latent_min_size = self.tile // VAE_FACTOR
        else:
            vae.disable_tiling()
        return vae


# ------------------------------------------------------------------------- the transformer call


def pack(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) latents -> (B, H/2 * W/2, 4C) tokens of 2x2 patches (FLUX's input)."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, d = x.shape
    c = d // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(H/2 * W/2, 3) RoPE positions (0, row, col) of a latent tile: each tile is its own image."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device)  # float32: bf16 would round positions above 256


class Velocity:
    """The transformer's velocity for a stack of latent tiles at one sigma, batched.

    Checks cancellation between batches (a FLUX.1-dev call on 4 tiles takes ~0.7 s on an H100, a whole
    step of a big frame much longer). Out of memory is ``pipeline.memory_policy``'s business (fewer tiles
    per batch, leaner memory modes, smaller tiles).
    """

    def __init__(self, transformer: torch.nn.Module, placement: Placement | None, cond: Conditioning,
                 uncond: Conditioning | None, settings: RefineSettings, device: torch.device | str,
                 dtype: torch.dtype, cancel: CancelToken,
                 on_batch: Callable[[int], None] = lambda n: None) -> None:
        self.transformer, self.placement, self.settings = transformer, placement, settings
        self.device, self.dtype, self.cancel, self.on_batch = torch.device(device), dtype, cancel, on_batch
        self.batch = max(1, settings.tile_batch)
        self.on_phase: Callable[[str], None] = lambda name: None  # told "sampling" (the memory policy's phase)
        use_cfg = uncond is not None and settings.true_cfg > 1.0
        conds = [cond, uncond] if use_cfg else [cond]
        self.cfg = use_cfg
        self.embeds = [c.prompt_embeds.to(self.device, dtype) for c in conds]
        self.pooled = [c.pooled.to(self.device, dtype) for c in conds]
        self.txt_ids = torch.zeros(cond.prompt_embeds.shape[1], 3, device=self.device)
        self._ids: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, tiles: torch.Tensor, sigma: float) -> torch.Tensor:
        self.on_phase("sampling")
        out = torch.empty_like(tiles, dtype=torch.float32)
        i, n = 0, tiles.shape[0]
        while i < n:
            self.cancel.check()
            b = min(self.batch, n - i)
            out[i:i + b] = self._forward(tiles[i:i + b], sigma)
            i += b
            self.on_batch(b)
        return out

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        b, _, h, w = x.shape
        if (h, w) not in self._ids:
            self._ids[(h, w)] = image_ids(h, w, self.device)
        tokens = pack(x.to(self.device, self.dtype))
        k = len(self.embeds)
        hs = tokens.repeat(k, 1, 1) if k > 1 else tokens
        enc = torch.cat([e.expand(b, -1, -1) for e in self.embeds])
        pooled = torch.cat([p.expand(b, -1) for p in self.pooled])
        t = torch.full((k * b,), sigma, device=self.device, dtype=torch.float32)
        g = torch.full((k * b,), self.settings.guidance, device=self.device, dtype=torch.float32)
        with self.placement.active("transformer") if self.placement is not None else nullcontext():
            out = self.transformer(hidden_states=hs, encoder_hidden_states=enc, pooled_projections=pooled,
                                   timestep=t, img_ids=self._ids[(h, w)], txt_ids=self.txt_ids,
                                   guidance=g, return_dict=False)[0]
        v = unpack(out.float(), h, w)
        if self.cfg:
            cond, uncond = v.chunk(2)
            v = uncond + self.settings.true_cfg * (cond - uncond)
        return v


# ----------------------------------------------------------------------------------- the modes


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) at the bottom/right to multiples of ``multiple``; returns the old size."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def frame_plan(h: int, w: int, s: RefineSettings) -> TilePlan:
    return plan_tiles(h, w, tile=s.tile, overlap=s.overlap, multiple=MULTIPLE, rows=s.rows, cols=s.cols)


@dataclass(frozen=True)
class Frame:
    """What both modes refine: the padded frame, one noise field for all of it, its tiles and schedule."""

    pixels: torch.Tensor  # (1, 3, H, W) in [0, 1], H and W multiples of 16
    noise: torch.Tensor  # (1, 16, H/8, W/8) float32, drawn on the CPU
    plan: TilePlan  # tiles in pixels
    sigmas: torch.Tensor  # the S+1 flow-matching sigmas

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1


def refine(rgb: torch.Tensor, *, codec: LatentCodec, velocity: Velocity, settings: RefineSettings,
           generator: torch.Generator, cancel: CancelToken, report: ProgressFn = no_progress,
           previews: PreviewSchedule | None = None) -> torch.Tensor:
    """(1, 3, H, W) pixels in [0, 1] -> the refined frame, same size. ``previews``: when to send a small
    RGB picture of the current x0 estimate with the progress (fixed latent-to-RGB map, no decode)."""
    # 1. Plan tiles on the padded frame
    x, (h, w) = pad_to_multiple(rgb.float())
    plan = frame_plan(x.shape[-2], x.shape[-1], settings)
    sigmas = comfy_sigmas(settings.steps, settings.denoise, settings.mu, settings.scheduler)
    # 2. One noise field for the whole frame, drawn on the CPU so a seed gives the same noise anywhere
    latent_size = (x.shape[-2] // VAE_FACTOR, x.shape[-1] // VAE_FACTOR)
    noise = torch.randn((1, LATENT_CHANNELS, *latent_size), generator=generator, dtype=torch.float32)
    frame = Frame(x, noise, plan, sigmas)
    # 3. Sample
    preview = Preview(previews, report)
    if settings.mode == "per_tile":
        out = _per_tile(frame, codec, velocity, max(1, settings.tile_batch), cancel=cancel, report=report,
                        preview=preview)
    else:
        out = _multidiffusion(frame, codec, velocity, cancel=cancel, report=report, preview=preview)
    # 4. Back to the frame's own size
    return out[..., :h, :w].cpu()


class Preview:
    """Sends the current x0 = x - sigma * v (the flow's clean-image estimate) as a thumbnail when the
    schedule says so; nothing is computed on the other steps."""

    def __init__(self, schedule: PreviewSchedule | None, report: ProgressFn) -> None:
        self.schedule, self.report = schedule, report

    def __call__(self, step: int, x: torch.Tensor, sigma: float, v: torch.Tensor, progress: Progress) -> None:
        if self.schedule is not None and self.schedule.due(step):
            x0 = x[:1].float() - sigma * v[:1].float()
            self.report(progress._replace(preview=latent_to_rgb(x0, LATENT_RGB, LATENT_RGB_BIAS)))


@functools.lru_cache(maxsize=8)
def device_blend_weights(plan: TilePlan, device: torch.device) -> torch.Tensor:
    """The plan's cosine blend weights, made once per plan and device (not once per step)."""
    return blend_weights(plan, "cosine").to(device=device, dtype=torch.float32)


def _multidiffusion(frame: Frame, codec: LatentCodec, velocity: Velocity, *, cancel: CancelToken,
                    report: ProgressFn, preview: Preview) -> torch.Tensor:
    """One encode, every tile's velocity fused at every step, one decode."""
    steps, n = frame.steps, len(frame.plan)
    latent_plan = frame.plan.scaled(1 / VAE_FACTOR)
    z0 = codec.encode(frame.pixels)
    cancel.check()
    state = {"done": 0, "step": 1}

    def on_batch(count: int) -> None:
        state["done"] += count
        in_step = state["done"] - (state["step"] - 1) * n
        report(Progress("", state["done"], steps * n, message=f"step {state['step']}/{steps}, tile {in_step}/{n}"))

    def fused(latents: torch.Tensor, sigma: float) -> torch.Tensor:
        v = velocity(crop_tiles(latents, latent_plan), sigma)
        v = assemble(v, latent_plan, blend="cosine", weights=device_blend_weights(latent_plan, v.device))
        preview(state["step"], latents, sigma, v,
                Progress("", state["done"], steps * n, message=f"step {state['step']}/{steps}"))
        return v

    def on_step(p: Progress) -> None:
        state["step"] = p.step + 1

    velocity.on_batch = on_batch
    start = noise_latents(z0, frame.noise.to(z0.device), float(frame.sigmas[0]))
    z = sample_euler(fused, start, frame.sigmas, progress=on_step, cancel=cancel)
    cancel.check()
    return codec.decode(z)


def _per_tile(frame: Frame, codec: LatentCodec, velocity: Velocity, group: int, *, cancel: CancelToken,
              report: ProgressFn, preview: Preview) -> torch.Tensor:
    """``group`` tiles at a time: each encoded, sampled and decoded on its own, cross-faded in pixels."""
    steps, n = frame.steps, len(frame.plan)
    latent_plan = frame.plan.scaled(1 / VAE_FACTOR)
    asm = Assembler(frame.plan, 3, blend="linear")
    pixel_tiles = crop_tiles(frame.pixels, frame.plan)
    noise_tiles = crop_tiles(frame.noise, latent_plan)
    state = {"done": 0, "step": 1, "first": 1, "last": 1}

    def on_batch(count: int) -> None:
        state["done"] += count
        report(Progress("", state["done"], steps * n,
                        message=f"tiles {state['first']}-{state['last']}/{n}, step {state['step']}/{steps}"))

    def on_step(p: Progress) -> None:
        state["step"] = min(p.step + 1, steps)

    velocity.on_batch = on_batch
    for start in range(0, n, group):
        cancel.check()
        idx = range(start, min(start + group, n))
        state.update(first=idx[0] + 1, last=idx[-1] + 1, step=1)
        z0 = codec.encode(pixel_tiles[idx[0]:idx[-1] + 1])
        begin = noise_latents(z0, noise_tiles[idx[0]:idx[-1] + 1].to(z0.device), float(frame.sigmas[0]))

        def tiles_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
            v = velocity(x, sigma)  # previews show the group's first tile
            preview(state["step"], x, sigma, v, Progress("", state["done"], steps * n,
                                                         message=f"tiles {state['first']}-{state['last']}/{n}"))
            return v

        z = sample_euler(tiles_velocity, begin, frame.sigmas, progress=on_step, cancel=cancel)
        out = codec.decode(z).cpu()
        for j, i in enumerate(idx):
            asm.add(i, out[j:j + 1])
    return asm.result()
