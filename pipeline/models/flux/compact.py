"""FLUX transformer files in the compact layouts ComfyUI users keep, written from any weights: GGUF
(city96/ComfyUI-GGUF: BFL keys, no prefix) and fp8 safetensors (plain, or ComfyUI's "scaled fp8" with a
``scaled_fp8`` marker and per-weight ``scale_weight``/``scale_input``). The tiny test models and the
benchmark's full-size random files both come from here, tensor by tensor, so a 12B file never has to
be in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..quant import quantize as qz
from .arch import FluxArch

# kept in the source precision by ComfyUI-GGUF's lcpp.patch for arch "flux"
GGUF_KEEP = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.")
E4M3_MAX = 448.0  # largest finite float8_e4m3fn
TensorFn = Callable[[str], torch.Tensor]


def bfl_shapes(arch: FluxArch) -> dict[str, tuple[int, ...]]:
    """Every tensor of a BFL-layout file of ``arch`` with its shape (built on the meta device)."""
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

    from .tiny import bfl_transformer_state

    with torch.device("meta"):
        model = FluxTransformer2DModel(**arch.to_diffusers())
    return {k: tuple(v.shape) for k, v in bfl_transformer_state(model.state_dict(), arch).items()}


def gguf_manifest(arch: FluxArch, file_type: str) -> qz.Manifest:
    """(name, shape, ggml type) of every tensor of a FLUX GGUF file of ``file_type`` (Q8_0, Q4_K_M…)."""
    return qz.manifest(bfl_shapes(arch).items(), file_type, GGUF_KEEP)


def write_gguf(path: Path, arch: FluxArch, file_type: str, tensor: TensorFn) -> Path:
    """A FLUX GGUF file; ``tensor(bfl_name)`` gives each weight (any float dtype)."""
    return qz.write_gguf(path, "flux", gguf_manifest(arch, file_type), tensor, file_type)


def fp8_layout(name: str, shape: tuple[int, ...], *, scaled: bool) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """The entries (name, dtype, shape) one BFL tensor becomes in a ComfyUI fp8 file: a 2-D weight
    float8 (with its scales when ``scaled``), anything else bf16."""
    if len(shape) == 2 and name.endswith(".weight"):
        layer = name[: -len(".weight")]
        scales = [(f"{layer}.scale_weight", torch.float32, ()), (f"{layer}.scale_input", torch.float32, ())]
        return [(name, torch.float8_e4m3fn, shape), *(scales if scaled else [])]
    return [(name, torch.bfloat16, shape)]


def fp8_entries(name: str, t: torch.Tensor, *, scaled: bool) -> dict[str, torch.Tensor]:
    """One BFL tensor as ``fp8_layout`` lays it out: scaled weights divided by a per-tensor scale
    absmax/448 stored as ``scale_weight`` (``scale_input`` 1)."""
    out: dict[str, torch.Tensor] = {}
    scale = (t.float().abs().max() / E4M3_MAX).clamp(min=1e-12).reshape(())
    for key, dtype, _shape in fp8_layout(name, tuple(t.shape), scaled=scaled):
        if key.endswith(".scale_input"):
            out[key] = torch.ones(())
        elif key.endswith(".scale_weight"):
            out[key] = scale
        elif dtype == torch.float8_e4m3fn and scaled:
            out[key] = (t.float() / scale).to(dtype)
        else:
            out[key] = t.to(dtype)
    return out


SCALED_MARKER = ("scaled_fp8", torch.float8_e4m3fn, (0,))  # ComfyUI's flag (empty: no fp8 matmul wanted)


def fp8_state(bfl: dict[str, torch.Tensor], *, scaled: bool) -> dict[str, torch.Tensor]:
    """A BFL state dict as a ComfyUI fp8 file (``scaled``: with per-tensor scales and the marker)."""
    out: dict[str, torch.Tensor] = {}
    for k, t in bfl.items():
        out.update(fp8_entries(k, t, scaled=scaled))
    if scaled:
        name, dtype, shape = SCALED_MARKER
        out[name] = torch.empty(shape, dtype=dtype)
    return out


def write_fp8(path: Path, bfl: dict[str, torch.Tensor], *, scaled: bool) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in fp8_state(bfl, scaled=scaled).items()}, str(path),
              metadata={"note": "fp8 FLUX transformer in ComfyUI's layout" + (" (scaled)" if scaled else "")})
    return path
