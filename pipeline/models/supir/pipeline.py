"""SUPIR restoration end to end on loaded models (``SUPIRModel.batchify_sample``):

1. z_LQ = 0.13025 * mode(quant_conv(denoise_encoder(LQ)))      degradation-robust encode
2. x_stage1 = decode(z_LQ)                                      the stage-1 image (colour reference)
3. z_stage1 = 0.13025 * sample(quant_conv(encoder(x_stage1)))   only for restoration guidance
4. x_T ~ N(0, I); sample with control = z_LQ in both CFG branches
5. decode, then colour fix against x_stage1
The stage (``pipeline/stages/supir.py``) handles image sizes, memory modes and progress; the parity
tests drive the same function with recorded noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ...colorfix import ColorFix, color_fix
from ...progress import CancelToken, ProgressFn
from ...samplers import dpmpp_2m_sde, edm_euler
from ...samplers.edm_euler import ParityRecord
from ...samplers.noise import NoiseSource
from ...samplers.report import StepPreview
from ...samplers.schedules import ddpm_sigma_table, dpm_schedule, legacy_sigmas
from ...samplers.tiles import LatentTiles
from ..placement import Placement
from ..sdxl import vae_tiled
from ..sdxl.load import SdxlModel, load_sdxl
from .control import ControlEncoder
from .denoiser import CfgDenoiser, TextCond
from .load import load_supir
from .unet import SupirUNet, vector_cond

SCALE_FACTOR = 0.13025
SIZE_IDS = (1024, 1024, 0, 0, 1024, 1024)  # SUPIR hard-codes SDXL's size conditioning for every image


@dataclass
class SupirModels:
    unet: SupirUNet  # SDXL UNet + connectors
    control: ControlEncoder
    vae: Any  # SDXL AutoencoderKL
    denoise_encoder: nn.Module
    te1: Any | None
    te2: Any | None
    sdxl_path: Path
    supir_path: Path
    table: torch.Tensor = field(default_factory=ddpm_sigma_table)

    def modules(self) -> list[nn.Module]:
        return list(self.parts().values())

    def parts(self) -> dict[str, nn.Module]:
        """The modules by name, as the memory placement moves them (text encoders only when loaded)."""
        named = {"unet": self.unet, "control": self.control, "vae": self.vae,
                 "denoise_encoder": self.denoise_encoder, "te1": self.te1, "te2": self.te2}
        return {k: m for k, m in named.items() if m is not None}

    def placement(self, mode: str, device: torch.device) -> Placement:
        return placement(mode, device, self.parts())


def placement(mode: str, device: torch.device, parts: dict[str, nn.Module]) -> Placement:
    """SUPIR's memory placement: eager offload (each phase runs once per job, so its models leave the
    device as soon as it ends) and every part streamed in sequential mode."""
    return Placement(mode, device, parts, eager=True, label="SUPIR")


def load_models(sdxl_path: Path, supir_path: Path, dtype: torch.dtype, vae_dtype: torch.dtype, *,
                head_dim: int | None = None, add_time_dim: int | None = None,
                text_encoders: bool = True) -> SupirModels:
    """SDXL then SUPIR, on the CPU, diffusion parts in ``dtype`` and the VAE parts in ``vae_dtype``."""
    sdxl: SdxlModel = load_sdxl(sdxl_path, dtype, vae_dtype=vae_dtype, head_dim=head_dim,
                                add_time_dim=add_time_dim, text_encoders=text_encoders)
    sup = load_supir(supir_path, sdxl.unet_arch, sdxl.vae_arch, dtype, vae_dtype)
    return SupirModels(SupirUNet(sdxl.unet, sup.connectors), sup.control, sdxl.vae, sup.denoise_encoder,
                       sdxl.te1, sdxl.te2, Path(sdxl_path), Path(supir_path))


def size_vector(pooled: torch.Tensor, add_time_proj: nn.Module) -> torch.Tensor:
    ids = torch.tensor([SIZE_IDS], dtype=torch.float32, device=pooled.device).expand(pooled.shape[0], -1)
    return vector_cond(pooled, ids, add_time_proj)


@dataclass(frozen=True)
class Settings:
    sampler: Literal["edm", "dpmpp_2m_sde"] = "dpmpp_2m_sde"
    steps: int = 45
    edm: edm_euler.EdmParams = field(default_factory=edm_euler.EdmParams)
    dpm: dpmpp_2m_sde.DpmParams = field(default_factory=dpmpp_2m_sde.DpmParams)
    color_fix: ColorFix = "wavelet"
    tile: int = 0  # latent tile for sampling (128 = 1024 px); 0 = untiled
    tile_stride: int = 64
    tile_batch: int = 1  # tiles per model call
    vae_tile: int = vae_tiled.AUTO  # px; 0 = never tile the VAE, AUTO = only when it does not fit


@dataclass
class Restored:
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    x_stage1: torch.Tensor
    z_lq: torch.Tensor
    latent: torch.Tensor
    z_stage1: torch.Tensor | None = None
    decoded: torch.Tensor | None = None  # before the colour fix


def encode_lq(m: SupirModels, x: torch.Tensor, s: Settings, cancel: CancelToken | None = None) -> torch.Tensor:
    moments = vae_tiled.encode_moments(m.vae, m.denoise_encoder, x, tile=s.vae_tile, cancel=cancel)
    return SCALE_FACTOR * moments.chunk(2, dim=1)[0]  # posterior mode


def decode(m: SupirModels, z: torch.Tensor, s: Settings, cancel: CancelToken | None = None) -> torch.Tensor:
    return vae_tiled.decode(m.vae, z / SCALE_FACTOR, tile=s.vae_tile, cancel=cancel)


def encode_sample(m: SupirModels, x: torch.Tensor, s: Settings, noise: NoiseSource,
                  cancel: CancelToken | None = None) -> torch.Tensor:
    """SDXL encoder posterior *sample* (SGM's AutoencoderKLInferenceWrapper.encode)."""
    moments = vae_tiled.encode_moments(m.vae, m.vae.encoder, x, tile=s.vae_tile, cancel=cancel)
    mean, logvar = moments.chunk(2, dim=1)
    std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
    return SCALE_FACTOR * (mean + std * noise("posterior", mean.shape).to(mean.device))


Phase = Callable[[str], None]  # told "first_stage", "sampling", "decode" as each begins


@torch.inference_mode()
def restore(m: SupirModels, lq: torch.Tensor, cond: TextCond, uncond: TextCond, s: Settings,
            noise: NoiseSource, *, place: Placement | None = None, progress: ProgressFn | None = None,
            preview: StepPreview | None = None, cancel: CancelToken | None = None, phase: Phase | None = None,
            parity_record: ParityRecord | None = None) -> Restored:
    """``lq`` [1, 3, H, W] in [-1, 1] at the working size (H, W multiples of 32) -> restored image."""
    place = place or m.placement("resident", lq.device)
    dev = place.device
    lq = lq.to(dev)
    enter = phase or (lambda name: None)
    # 1-3. first stage
    enter("first_stage")
    with place.active("denoise_encoder", "vae"):
        z_lq = encode_lq(m, lq, s, cancel)
        x_stage1 = decode(m, z_lq, s, cancel)
        z_stage1 = None
        if s.sampler == "edm" and s.edm.restore_cfg > 0:
            z_stage1 = encode_sample(m, x_stage1, s, noise, cancel)
    # 4. sampling
    enter("sampling")
    x_t = noise("x_T", z_lq.shape).to(dev)
    tiles = LatentTiles.plan(*z_lq.shape[-2:], tile=s.tile, stride=s.tile_stride) if s.tile else None
    with place.active("unet", "control"):
        model = CfgDenoiser(m.unet, m.control, m.table, cond, uncond, z_lq)
        if s.sampler == "edm":
            latent = edm_euler.sample(model, x_t, legacy_sigmas(s.steps, m.table), s.edm, noise=noise,
                                      x_center=z_stage1, tiles=tiles, tile_batch=s.tile_batch, progress=progress,
                                      preview=preview, cancel=cancel, parity_record=parity_record)
        else:
            latent = dpmpp_2m_sde.sample(model, x_t, dpm_schedule(s.steps, m.table), s.dpm, noise=noise,
                                         tiles=tiles, tile_batch=s.tile_batch, progress=progress, preview=preview,
                                         cancel=cancel, parity_record=parity_record)
    # 5. decode + colour fix
    enter("decode")
    with place.active("vae"):
        out = decode(m, latent, s, cancel)
    fixed = color_fix(out, x_stage1, s.color_fix)
    return Restored(fixed, x_stage1, z_lq, latent, z_stage1, decoded=out)
