"""Weights kept compact in memory and widened per layer at forward time.

- ``Packed``: a GGUF tensor as stored (uint8 rows of quantised blocks) with its type and logical shape.
  Plan ops that only pick or reorder rows (q/k/v chunks of a fused projection, swapped halves) apply
  to the bytes unchanged, so BFL-layout files convert without dequantising.
- ``QuantLinear``: a Linear whose weight is such a byte block, dequantised when the layer runs (as
  city96/ComfyUI-GGUF's GGMLLayer does): a Q8_0 12B transformer holds ~12.7 GB instead of 24.
- ``CastLinear``: a Linear whose weight stays float8 (e4m3fn / e5m2) and is upcast to the input's dtype
  when it runs, times the per-tensor ``scale_weight`` of ComfyUI's "scaled fp8" files (ComfyUI's
  manual_cast and scaled_fp8_op: weight.to(dtype) * scale_weight.to(dtype)). ``scale_input`` is kept
  (the file has it) but only ComfyUI's fp8-matmul path uses it, which this upcast path is not.

``adapt`` turns a meta-built model's Linear layers into these where the loaded state holds packed or
fp8 weights, and returns the state to load strictly into the adapted model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from . import dequant as dq

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
SCALE_SUFFIXES = (".scale_weight", ".scale_input")
Fp8Policy = Literal["upcast", "keep", "cast"]  # fp8 weights: widen at load / keep as stored / also cast others


@dataclass(frozen=True)
class Packed:
    """A GGUF-quantised tensor: ``raw`` uint8 of shape (*shape[:-1], row bytes)."""

    raw: torch.Tensor
    qtype: int
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        want = (*self.shape[:-1], dq.row_bytes(self.shape[-1], self.qtype))
        if tuple(self.raw.shape) != want or self.raw.dtype != torch.uint8:
            raise ValueError(f"{dq.NAMES[self.qtype]} bytes {tuple(self.raw.shape)} do not hold a {self.shape} tensor")

    @property
    def nbytes(self) -> int:
        return self.raw.numel()

    def map(self, op: Callable[[torch.Tensor], torch.Tensor]) -> Packed:
        """``op`` applied to the rows: valid when it keeps every row whole (chunks, splits, row swaps)."""
        shape = tuple(op(torch.empty(self.shape, device="meta")).shape)
        raw = op(self.raw)
        if tuple(raw.shape[:-1]) != shape[:-1] or raw.shape[-1] != self.raw.shape[-1]:
            raise ValueError(f"cannot apply a conversion that mixes values within rows to a quantised "
                             f"{dq.NAMES[self.qtype]} tensor {self.shape}")
        return Packed(raw, self.qtype, shape)

    def to(self, device: torch.device | str) -> Packed:
        return Packed(self.raw.contiguous().to(device), self.qtype, self.shape)

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        return dq.dequantize(self.raw, self.qtype, self.shape).to(dtype)


class QuantLinear(torch.nn.Module):
    """Linear over a GGUF-quantised weight (``weight`` holds the blocks), dequantised per call."""

    def __init__(self, in_features: int, out_features: int, qtype: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.qtype = in_features, out_features, qtype
        raw = torch.empty(out_features, dq.row_bytes(in_features, qtype), dtype=torch.uint8, device="meta")
        self.weight = torch.nn.Parameter(raw, requires_grad=False)  # a parameter: offload hooks move it
        self.bias = torch.nn.Parameter(torch.empty(out_features, device="meta"), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dq.dequantize(self.weight, self.qtype, (self.out_features, self.in_features)).to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {dq.NAMES[self.qtype]}"


class CastLinear(torch.nn.Module):
    """Linear over a float8 weight, upcast per call (times ``scale_weight`` when the file has one)."""

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype, bias: bool,
                 scales: Collection[str] = ()) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, device="meta"),
                                         requires_grad=False)
        self.bias = torch.nn.Parameter(torch.empty(out_features, device="meta"), requires_grad=False) if bias else None
        self.scale_weight: torch.nn.Parameter | None = None
        self.scale_input: torch.nn.Parameter | None = None
        for name in scales:  # parameters, so the file's scale tensors load strictly and move with the layer
            setattr(self, name, torch.nn.Parameter(torch.empty((), device="meta"), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        if self.scale_weight is not None:
            w = w * self.scale_weight.to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        scaled = ", scaled" if self.scale_weight is not None else ""
        return f"in={self.in_features}, out={self.out_features}, {self.weight.dtype}{scaled}"


def scale_keys(keys: Collection[str], weights: Collection[str]) -> set[str]:
    """The ``<layer>.scale_weight`` / ``.scale_input`` keys among ``keys`` whose ``<layer>.weight`` is in
    ``weights``: the per-tensor scales of ComfyUI's scaled fp8 files (not parameters of the bare model)."""
    return {k for k in keys if k.endswith(SCALE_SUFFIXES) and k.rsplit(".", 1)[0] + ".weight" in weights}


def widened(state: dict[str, object], key: str, dtype: torch.dtype) -> torch.Tensor:
    """A packed or (scaled) fp8 weight as a plain ``dtype`` tensor, its scales consumed from ``state``."""
    t = state[key]
    if isinstance(t, Packed):
        return t.dequantize(dtype)
    assert isinstance(t, torch.Tensor)
    out = t.to(dtype)
    layer = key.rsplit(".", 1)[0]
    scale = state.pop(layer + ".scale_weight", None)
    state.pop(layer + ".scale_input", None)
    if isinstance(scale, torch.Tensor):
        out = out * scale.to(dtype)
    return out


def adapt(model: torch.nn.Module, state: dict[str, object], dtype: torch.dtype,
          fp8: Fp8Policy) -> dict[str, torch.Tensor]:
    """Swap the meta-built ``model``'s Linear layers for Quant/CastLinear where ``state`` holds packed or
    kept fp8 weights; widen every other packed/fp8/scaled tensor to ``dtype``. Returns the state the
    adapted model loads strictly (its keys are exactly the adapted model's)."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    out: dict[str, torch.Tensor] = {}
    for key in [k for k in state if not k.endswith(SCALE_SUFFIXES)]:
        t = state[key]
        layer, _, leaf = key.rpartition(".")
        linear = linears.get(layer) if leaf == "weight" else None
        if linear is not None and isinstance(t, Packed):
            _swap(model, layer, QuantLinear(linear.in_features, linear.out_features, t.qtype, linear.bias is not None))
            out[key] = t.raw
        elif linear is not None and isinstance(t, torch.Tensor) and t.dtype in FP8 and fp8 != "upcast":
            present = [s.lstrip(".") for s in SCALE_SUFFIXES if layer + s in state]
            _swap(model, layer, CastLinear(linear.in_features, linear.out_features, t.dtype,
                                           linear.bias is not None, present))
            out[key] = t
            out.update({f"{layer}.{s}": _scalar(state[f"{layer}.{s}"]) for s in present})
        elif isinstance(t, Packed) or (isinstance(t, torch.Tensor) and (t.dtype in FP8 or _scaled(state, key))):
            out[key] = widened(state, key, dtype)
        else:
            assert isinstance(t, torch.Tensor)
            out[key] = t
    return out


def _scaled(state: dict[str, object], key: str) -> bool:
    return key.endswith(".weight") and key[: -len("weight")] + "scale_weight" in state


def _scalar(t: object) -> torch.Tensor:
    assert isinstance(t, torch.Tensor)
    return t.float().reshape(())


def _swap(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
