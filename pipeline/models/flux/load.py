"""FLUX.1 weights: how the transformer and the autoencoder are loaded (where they are: ``weights.py``).

Every part is found locally (``[weights]`` in the config, a ComfyUI ``models/`` tree, Dermis's models
folder) and never downloaded. Accepted forms:

- transformer: a single ``.safetensors`` in the BFL layout (``flux1-dev.safetensors``, community SRPO
  repacks, also under ComfyUI's ``model.diffusion_model.`` prefix) or the diffusers layout (tencent/SRPO
  ``diffusion_pytorch_model.safetensors``, fp32, 47.6 GB), or a diffusers ``transformer/`` folder; in
  bf16/fp16/fp32, float8 (ComfyUI's fp8 files, plain or "scaled" with per-tensor ``scale_weight``), or
  a GGUF file (city96/ComfyUI-GGUF: Q8_0, Q5_K, Q4_K, Q4_0…, BFL keys) whose weights stay quantised
  and are dequantised layer by layer as they run (``pipeline.models.quant``);
- autoencoder: ``ae.safetensors`` (BFL layout) or a diffusers ``vae/`` folder / file;
- text encoders and tokenizers: ``pipeline.models.flux.text``.

Big files are streamed one tensor at a time and cast on the fly (``tensor_files``), so loading the fp32
SRPO file in bf16 needs 24 GB of RAM, not 72.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import WrongWeights
from ..meta import built
from ..quant import Fp8Policy
from ..tensor_files import Plan, Source, TensorSource, identity_plan, stream_into, with_scales
from . import convert as fc
from .arch import FluxArch, FluxVaeArch, Layout

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WrongWeights(path, f"is not a readable config.json ({e}).") from None


def _sidecar_config(path: Path, class_name: str) -> dict[str, Any] | None:
    """A diffusers config.json in the weights' folder (HF downloads keep one next to the file)."""
    folder = path if path.is_dir() else path.parent
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        cfg = _read_config(cfg_path)
        if cfg.get("_class_name") == class_name:
            return cfg
    return None


def _open_layout(path: Path, prefixes: tuple[str, ...], markers: tuple[str, str],
                 layout_of: Callable[[Collection[str]], Layout | None], not_it: str) -> tuple[TensorSource, Layout]:
    """The file with the prefix under which the BFL, else the diffusers, layout marker exists."""
    src = TensorSource.open(path, prefixes, marker=markers)
    layout = layout_of(src.keys())
    if layout is None:
        src.close()
        raise WrongWeights(path, not_it)
    return src, layout


def _arch_of(make: Callable[[], Any], path: Path) -> Any:
    """An architecture from a config.json, its ValueError turned into the file's WrongWeights."""
    try:
        return make()
    except (ValueError, TypeError, KeyError) as e:
        raise WrongWeights(path, f"has a config.json describing no FLUX.1 architecture ({e}).") from None


# ------------------------------------------------------------------------------------ transformer


def open_transformer(path: Path) -> tuple[TensorSource, Layout]:
    return _open_layout(path, fc.TRANSFORMER_PREFIXES, (fc.BFL_MARKER, fc.DIFFUSERS_MARKER), fc.transformer_layout,
                        f"is not a FLUX.1 transformer: it has neither '{fc.BFL_MARKER}' (BFL layout) "
                        f"nor '{fc.DIFFUSERS_MARKER}' (diffusers layout).")


def transformer_arch(src: Source, layout: Layout, path: Path) -> FluxArch:
    """The architecture of the transformer in ``src``: its sidecar config.json, else read off the shapes."""
    cfg = _sidecar_config(path, "FluxTransformer2DModel")
    if cfg is not None:
        return _arch_of(lambda: FluxArch.from_diffusers(cfg), path)
    return FluxArch.from_shapes(src.shapes(), layout, path)


def transformer_plan(src: Source, layout: Layout, arch: FluxArch) -> Plan:
    """(diffusers key -> (source key, op)), checked against the file's own key list."""
    shapes = src.shapes()
    plan = fc.bfl_transformer_plan(shapes, arch) if layout == "bfl" else identity_plan(shapes)
    plan = with_scales(plan, shapes)  # scaled fp8: each weight's scales travel with it
    fc.plan_sources(src.origin, plan, shapes)
    return plan


def load_transformer(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu",
                     arch: FluxArch | None = None, fp8: Fp8Policy = "upcast") -> FluxTransformer2DModel:
    """A FluxTransformer2DModel from any FLUX.1 transformer file or folder, streamed and cast to dtype.

    ``arch`` overrides the architecture found next to the file or read from its shapes; ``fp8`` is what
    happens to float8 weights (``variant.fp8_policy``); GGUF weights always stay quantised.
    """
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

    path = Path(path)
    src, layout = open_transformer(path)
    with src:
        arch = arch or transformer_arch(src, layout, path)
        plan = transformer_plan(src, layout, arch)
        with torch.device("meta"):
            model = built(FluxTransformer2DModel.from_config(arch.to_diffusers()), FluxTransformer2DModel)
        return stream_into(model, src, plan, dtype=dtype, device=device, fp8=fp8,
                           what=f"a FluxTransformer2DModel ({layout} layout)")


# --------------------------------------------------------------------------------------- VAE


def open_vae(path: Path) -> tuple[TensorSource, Layout]:
    return _open_layout(path, fc.VAE_PREFIXES, (fc.BFL_VAE_MARKER, fc.DIFFUSERS_VAE_MARKER), fc.vae_layout,
                        "is not an autoencoder: it has neither the BFL (ae.safetensors) nor the diffusers "
                        "AutoencoderKL key layout.")


def vae_arch(src: Source, layout: Layout, path: Path) -> FluxVaeArch:
    """A diffusers vae/ folder's config.json, else the architecture read off the shapes."""
    cfg = _sidecar_config(path, "AutoencoderKL") if path.is_dir() else None
    if cfg is not None:
        return _arch_of(lambda: FluxVaeArch.from_diffusers(cfg), path)
    return FluxVaeArch.from_shapes(src.shapes(), layout, path)


def vae_plan(src: Source, layout: Layout, module_shapes: dict[str, tuple[int, ...]], levels: int) -> Plan:
    """(diffusers key -> (source key, op)); every tensor of the file must be used (a wrong or extended
    file is reported key by key)."""
    shapes = src.shapes()
    plan = fc.bfl_vae_plan(module_shapes, levels) if layout == "bfl" else identity_plan(shapes)
    fc.plan_sources(src.origin, plan, shapes)
    return plan


def load_vae(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu") -> AutoencoderKL:
    """An AutoencoderKL from ``ae.safetensors`` (BFL layout) or a diffusers vae/ folder or file."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    path = Path(path)
    src, layout = open_vae(path)
    with src:
        arch = vae_arch(src, layout, path)
        with torch.device("meta"):
            model = built(AutoencoderKL.from_config(arch.to_diffusers()), AutoencoderKL)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        plan = vae_plan(src, layout, shapes, len(arch.widths))
        return stream_into(model, src, plan, dtype=dtype, device=device,
                           what=f"the FLUX.1 autoencoder ({layout} layout)")
