"""FLUX.1 weights: where they are (registry) and how the transformer and the autoencoder are loaded.

Every part is found locally (``[weights]`` in the config, a ComfyUI ``models/`` tree, Dermis's models
folder) and never downloaded. Accepted forms:

- transformer: a single ``.safetensors`` in the BFL layout (``flux1-dev.safetensors``, community SRPO
  repacks, also under ComfyUI's ``model.diffusion_model.`` prefix) or the diffusers layout (tencent/SRPO
  ``diffusion_pytorch_model.safetensors``, fp32, 47.6 GB), or a diffusers ``transformer/`` folder;
- autoencoder: ``ae.safetensors`` (BFL layout) or a diffusers ``vae/`` folder / file;
- text encoders and tokenizers: ``pipeline.models.flux.text``.

Big files are streamed one tensor at a time and cast on the fly (``tensor_files``), so loading the fp32
SRPO file in bf16 needs 24 GB of RAM, not 72.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import WrongWeights
from ..tensor_files import TensorSource, check_tensors, stream_into
from . import convert as fc

# ------------------------------------------------------------------------------------ transformer


def _init_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


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


def _open_layout(path: Path, prefixes: tuple[str, ...], markers: tuple[str, str], layout_of,
                 not_it: str) -> tuple[TensorSource, fc.Layout]:
    """The file with the prefix under which the BFL, else the diffusers, layout marker exists."""
    src = TensorSource.open(path, prefixes, marker=markers)
    layout = layout_of(src.keys())
    if layout is None:
        src.close()
        raise WrongWeights(path, not_it)
    return src, layout


def open_transformer(path: Path) -> tuple[TensorSource, fc.Layout]:
    return _open_layout(path, fc.TRANSFORMER_PREFIXES, (fc.BFL_MARKER, fc.DIFFUSERS_MARKER), fc.transformer_layout,
                        f"is not a FLUX.1 transformer: it has neither '{fc.BFL_MARKER}' (BFL layout) "
                        f"nor '{fc.DIFFUSERS_MARKER}' (diffusers layout).")


def transformer_plan(src: TensorSource, layout: fc.Layout, config: Mapping[str, Any]):
    """(diffusers key -> (source key, op)), checked against the file's own key list."""
    shapes = src.shapes()
    plan = fc.bfl_transformer_plan(shapes, config) if layout == "bfl" else fc.identity_plan(shapes)
    fc.plan_sources(src.origin, plan, shapes)
    return plan


def load_transformer(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu",
                     config: Mapping[str, Any] | None = None):
    """A FluxTransformer2DModel from any FLUX.1 transformer file or folder, streamed and cast to dtype.

    ``config`` (a diffusers config dict) overrides the one found next to the file or read from shapes.
    """
    from diffusers import FluxTransformer2DModel

    path = Path(path)
    src, layout = open_transformer(path)
    with src:
        cfg = dict(config) if config is not None else _sidecar_config(path, "FluxTransformer2DModel")
        if cfg is None:
            cfg = fc.transformer_config(src.shapes(), layout, path)
        plan = transformer_plan(src, layout, _init_keys(cfg))
        with torch.device("meta"):
            model = FluxTransformer2DModel.from_config(_init_keys(cfg))
        return stream_into(model, src, plan, dtype=dtype, device=device,
                           what=f"a FluxTransformer2DModel ({layout} layout)")


# --------------------------------------------------------------------------------------- VAE


def open_vae(path: Path) -> tuple[TensorSource, fc.Layout]:
    return _open_layout(path, fc.VAE_PREFIXES, (fc.BFL_VAE_MARKER, fc.DIFFUSERS_VAE_MARKER), fc.vae_layout,
                        "is not an autoencoder: it has neither the BFL (ae.safetensors) nor the diffusers "
                        "AutoencoderKL key layout.")


def vae_state(src: TensorSource, layout: fc.Layout, config: Mapping[str, Any],
              read=lambda src, k: src.get(k)) -> dict[str, Any]:
    """The diffusers-layout state dict of the autoencoder (335 MB: read whole, unlike the transformer).

    Every tensor of the file must be used: diffusers' converter drops unknown keys silently, so the
    sources of its outputs are traced by storage and anything left over is reported.
    """
    raw = {k: read(src, k) for k in src.keys()}
    if layout == "diffusers":
        return raw
    out = fc.convert_bfl_vae(raw, config)
    if raw and next(iter(raw.values())).device.type != "meta":
        used = {t.untyped_storage().data_ptr() for t in out.values()}
        left = sorted(k for k, t in raw.items() if t.untyped_storage().data_ptr() not in used)
        if left:
            raise WrongWeights(src.origin, "holds tensors a FLUX.1 autoencoder does not have.", unexpected=left)
    return out


def load_vae(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu"):
    """An AutoencoderKL from ``ae.safetensors`` (BFL layout) or a diffusers vae/ folder or file."""
    from diffusers import AutoencoderKL

    path = Path(path)
    src, layout = open_vae(path)
    with src:
        cfg = _sidecar_config(path, "AutoencoderKL") if path.is_dir() else None
        cfg = _init_keys(cfg) if cfg is not None else fc.vae_config(src.shapes(), layout, path)
        with torch.device("meta"):
            model = AutoencoderKL.from_config(cfg)
        state = vae_state(src, layout, cfg, read=lambda s, k: s.get(k).to(dtype))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    what = f"the FLUX.1 autoencoder ({layout} layout)"
    check_tensors(path, state.keys(), expected.keys(), f"does not match {what}")
    check_tensors(path, {k: tuple(v.shape) for k, v in state.items()}, expected, f"does not match {what}")
    model.load_state_dict({k: v.contiguous().to(device) for k, v in state.items()}, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()
