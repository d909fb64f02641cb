"""Which kind of FLUX transformer file a path is, what it will hold in memory, and what ``weight_dtype``
does with it: read from the file's header only (no tensor data), for the loader, ``dermis doctor`` and
the memory chooser.

Kinds: ``gguf`` (ComfyUI-GGUF; stays quantised, ``Q8_0`` ≈ 12.7 GB for FLUX.1-dev), ``fp8`` (float8
e4m3fn/e5m2 safetensors, ``scaled`` when it carries ComfyUI's per-tensor scales), ``bf16``/``fp16``/
``fp32`` safetensors or diffusers folders.

``weight_dtype`` (the flux_refine setting): ``default`` widens fp8 to the compute dtype at load;
``fp8`` keeps fp8 weights fp8 (and casts a wider file's Linear weights to e4m3fn, as ComfyUI's
weight_dtype fp8_e4m3fn does, which has been reported to blur SRPO); ``auto`` keeps an fp8 file fp8
only when the card has less than ``FP8_BELOW`` free, where the 24 GB bf16 transformer would not stay
resident next to the VAE and the work space.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..quant import Fp8Policy
from ..tensor_files import TensorSource
from . import convert as fc

WeightDtype = Literal["auto", "default", "fp8"]
FP8_BELOW = 30 * 2**30  # bytes free on the device under which ``auto`` keeps an fp8 file fp8
FP8_NAMES = ("float8_e4m3fn", "float8_e5m2", "F8_E4M3", "F8_E5M2")
_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "float32": 4, "float16": 2, "bfloat16": 2, "F64": 8, "float64": 8}


@dataclass(frozen=True)
class Variant:
    path: Path
    kind: str  # gguf | fp8 | bf16 | fp16 | fp32
    detail: str  # "GGUF Q8_0 (304 Q8_0, 476 F32, …)", "fp8 e4m3fn, scaled", …
    file_bytes: int
    params: int
    weight_bytes: dict[str, int]  # per fp8 policy / gguf: bytes the loaded transformer holds (bf16 compute)

    @property
    def is_fp8(self) -> bool:
        return self.kind == "fp8"


def describe(path: Path, compute: torch.dtype = torch.bfloat16) -> Variant:
    """The variant of a transformer file or folder, from its header."""
    path = Path(path)
    src = TensorSource.open(path, fc.TRANSFORMER_PREFIXES, marker=(fc.BFL_MARKER, fc.DIFFUSERS_MARKER))
    with src:
        dtypes, shapes = src.dtypes(), src.shapes()
        scaled = "scaled_fp8" in src.markers or any(k.endswith(".scale_weight") for k in dtypes)
    weights = {k: v for k, v in dtypes.items() if not k.endswith((".scale_weight", ".scale_input"))}
    numel = {k: int(torch.Size(shapes[k]).numel()) for k in weights}
    counts = Counter(weights.values())  # tensors per type (for the listing)
    by_values = Counter()  # values per type: what the file mostly is
    for k, t in weights.items():
        by_values[t] += numel[k]
    size = torch.empty((), dtype=compute).element_size()
    file_bytes = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*.safetensors")))
    if path.suffix.lower() == ".gguf":
        from ..quant import dequant as dq

        quantised = {q for q in counts if q not in ("F32", "F16", "BF16")}
        main = max(quantised, key=lambda q: by_values[q]) if quantised else "BF16"
        held = sum(_gguf_bytes(shapes[k], t, dq) if t in quantised else numel[k] * size for k, t in weights.items())
        listing = ", ".join(f"{n} {t}" for t, n in counts.most_common())
        return Variant(path, "gguf", f"GGUF {main} ({listing})", file_bytes, sum(numel.values()),
                       {"upcast": held, "keep": held, "cast": held})
    main = by_values.most_common(1)[0][0] if by_values else "bfloat16"
    total = sum(numel.values())
    wide = total * size
    if main in FP8_NAMES:
        fp8 = sum(numel[k] for k, t in weights.items() if t in FP8_NAMES and len(shapes[k]) == 2)
        kept = (total - fp8) * size + fp8
        name = "e5m2" if "5M2" in main.upper() else "e4m3fn"
        return Variant(path, "fp8", f"fp8 {name}{', scaled (per-tensor scale_weight)' if scaled else ''}", file_bytes,
                       total, {"upcast": wide, "keep": kept, "cast": kept})
    linear = sum(numel[k] for k in weights if len(shapes[k]) == 2)
    kind = {"float32": "fp32", "F32": "fp32", "float16": "fp16", "F16": "fp16"}.get(main, "bf16")
    return Variant(path, kind, kind, file_bytes, total,
                   {"upcast": wide, "keep": wide, "cast": (total - linear) * size + linear})


def fp8_policy(weight_dtype: str, variant: Variant, free_bytes: int | None) -> tuple[Fp8Policy, str]:
    """(what the loader does with fp8 weights, why) for the ``weight_dtype`` setting. ``free_bytes``:
    device memory free for FLUX (None off CUDA, where fp8 saves nothing worth the upcasts)."""
    if variant.kind == "gguf":
        return "upcast", f"{variant.detail.split(' (')[0]}: stays quantised, dequantised layer by layer as it runs"
    if weight_dtype == "fp8":
        return ("keep" if variant.is_fp8 else "cast"), "weight_dtype = fp8 was asked for" + (
            "" if variant.is_fp8 else " (this file is not fp8: its Linear weights are cast to e4m3fn, which "
                                      "has been reported to blur SRPO)")
    if weight_dtype == "default" or not variant.is_fp8:
        return "upcast", ("weight_dtype = default" if weight_dtype == "default" else f"a {variant.kind} file")
    if free_bytes is None:
        return "upcast", "fp8 file widened to the compute dtype (no CUDA device: nothing to save)"
    gib = free_bytes / 2**30
    if free_bytes < FP8_BELOW:
        return "keep", f"fp8 file kept fp8 ({gib:.1f} GiB free is under {FP8_BELOW / 2**30:.0f} GiB)"
    return "upcast", f"fp8 file widened to bf16 ({gib:.1f} GiB free: room for the wide weights)"


def _gguf_bytes(shape: tuple[int, ...], qtype_name: str, dq) -> int:
    qtype = next(q for q, n in dq.NAMES.items() if n == qtype_name)
    rows = int(torch.Size(shape[:-1]).numel())
    return rows * dq.row_bytes(shape[-1], qtype)
