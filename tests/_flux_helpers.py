"""Shared pieces of the FLUX tests: stand-in models for the seam tests, counting wrappers, a preset."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.models.flux.engine import LATENT_CHANNELS, VAE_FACTOR, RefineSettings, Velocity
from pipeline.models.flux.text import Conditioning

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def flux_fixtures() -> Path:
    return Path(os.environ.get("DERMIS_FLUX_FIXTURES", SHARED / "fixtures" / "flux"))


class ConstantTransformer(torch.nn.Module):
    """Predicts the same velocity for every token: MultiDiffusion must then equal the untiled run."""

    def __init__(self, value: float = 0.25) -> None:
        super().__init__()
        self.value = value
        self.calls: list[int] = []  # batch size of every call

    def forward(self, *, hidden_states, return_dict=False, **kwargs):
        self.calls.append(hidden_states.shape[0])
        return (torch.full_like(hidden_states, self.value),)


class Counting(torch.nn.Module):
    """Wraps a transformer, recording batch sizes; ``fail_above`` raises CUDA OOM for bigger batches."""

    def __init__(self, inner, fail_above: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.fail_above = fail_above
        self.calls: list[int] = []

    def forward(self, **kwargs):
        b = kwargs["hidden_states"].shape[0]
        if self.fail_above is not None and b > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test)")
        self.calls.append(b)
        return self.inner(**kwargs)


class LocalCodec:
    """A strictly local stand-in for the VAE (8x8 means in, nearest upsampling out): encoding a tile
    equals cropping the frame's encoding, so per-tile img2img must reproduce the untiled run exactly."""

    @staticmethod
    def encode(rgb: torch.Tensor) -> torch.Tensor:
        z = F.avg_pool2d(rgb.float(), VAE_FACTOR)
        return torch.cat([z, torch.zeros(z.shape[0], LATENT_CHANNELS - 3, *z.shape[2:])], dim=1)

    @staticmethod
    def decode(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z[:, :3], scale_factor=VAE_FACTOR, mode="nearest").clamp(0, 1)


def conditioning(tokens: int = 8, width: int = 32, pooled: int = 32, seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(torch.randn(1, tokens, width, generator=g), torch.randn(1, pooled, generator=g))


def velocity(transformer, settings: RefineSettings, *, placement=None, cancel=None, uncond=None) -> Velocity:
    from pipeline import CancelToken

    return Velocity(transformer, placement, conditioning(), uncond, settings, torch.device("cpu"),
                    torch.float32, cancel or CancelToken())


def write_preset(name: str, stages: str, scale: float = 1.0) -> Path:
    """A user preset in $XDG_CONFIG_HOME/dermis/presets (conftest points it at a temp dir)."""
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "dermis" / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nscale = {scale}\n{stages}', encoding="utf-8")
    return path


FLUX_STAGE = """
[[stage]]
id = "{id}"
kind = "flux_refine"
denoise = {denoise}
steps = {steps}
tile = {tile}
{extra}
"""


def flux_stages(steps: int = 2, tile: int = 1024, extra: str = "", stage_3: bool = True) -> str:
    """The preset's stage 2 (refine, denoise 0.3) and, with ``stage_3``, stage 3 (final, 0.45)."""
    stages = [("refine", 0.3), ("final", 0.45)][: 2 if stage_3 else 1]
    return "".join(FLUX_STAGE.format(id=i, denoise=d, steps=steps, tile=tile, extra=extra) for i, d in stages)
