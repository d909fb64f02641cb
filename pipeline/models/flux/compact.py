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


def fp8_state(bfl: dict[str, torch.Tensor], *, scaled: bool,
              fmt: torch.dtype = torch.float8_e4m3fn) -> dict[str, torch.Tensor]:
    """A BFL state dict as a ComfyUI fp8 file: 2-D weights float8 (``scaled``: divided by a per-tensor
    scale absmax/448 stored as ``<layer>.scale_weight``, with ``scale_input`` 1 and the ``scaled_fp8``
    marker), everything else bf16."""
    out: dict[str, torch.Tensor] = {}
    for k, t in bfl.items():
        if t.ndim == 2 and k.endswith(".weight"):
            layer = k[: -len(".weight")]
            if scaled:
                scale = (t.float().abs().max() / E4M3_MAX).clamp(min=1e-12)
                out[k] = (t.float() / scale).to(fmt)
                out[f"{layer}.scale_weight"] = scale.reshape(())
                out[f"{layer}.scale_input"] = torch.ones(())
            else:
                out[k] = t.to(fmt)
        else:
            out[k] = t.to(torch.bfloat16)
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=fmt)  # ComfyUI's marker (empty: no fp8 matmul wanted)
    return out


def write_fp8(path: Path, bfl: dict[str, torch.Tensor], *, scaled: bool) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in fp8_state(bfl, scaled=scaled).items()}, str(path),
              metadata={"note": "fp8 FLUX transformer in ComfyUI's layout" + (" (scaled)" if scaled else "")})
    return path
