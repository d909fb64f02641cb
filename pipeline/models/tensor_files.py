"""Reading weights tensor by tensor: the one reading layer every model family uses.

Accepted: one ``.safetensors`` file, a folder of them (sharded with an index, or single), one pickled
``.ckpt``/``.pth``/``.pt``/``.bin`` (SUPIR-v0Q.ckpt, upscalers, face models), or one ``.gguf`` file
(ComfyUI-GGUF's quantised models, ``quant.gguf_file``). Nothing that runs code is ever loaded: pickles
go through ``torch.load(weights_only=True)``.

Compact weights: GGUF-quantised tensors stay quantised (``quant.Packed``) and float8 ones may stay
float8 (``stream_into``'s ``fp8`` policy); ``quant.adapt`` gives their Linear layers per-call
dequantisation. ComfyUI's "scaled fp8" files carry a ``<layer>.scale_weight`` (and ``scale_input``)
per weight and a ``scaled_fp8`` marker tensor: the marker is metadata here (``markers``), the scales
are loaded with their weights, so the key checks stay strict for them too.

Big checkpoints (the fp32 SRPO transformer is 47.6 GB, SUPIR-v0Q.ckpt 5 GB) must never be read whole:
``TensorSource`` gives key names and shapes from the safetensors headers without reading data, and
``get`` reads one tensor. Pickles in the zip format are memory-mapped, so only the tensors asked for
come into RAM (the legacy format cannot be mapped and is read whole). ``stream_into`` builds a model on
the meta device and fills it one converted, cast tensor at a time, so host memory holds at most the
finished model plus the one tensor being converted. Missing, unexpected and mis-shaped keys are checked
before any data is read, and fail with ``WrongWeights`` naming the file and the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from ..errors import WrongWeights
from .quant import FP8, Fp8Policy, Packed, adapt, scale_keys
from .quant.layers import SCALE_SUFFIXES
from .readers import (
    GGUF_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    Reader,
    check_suffix,
    files_of,
    open_reader,
    read_pickle,
)

MARKERS = ("scaled_fp8",)  # ComfyUI's file-level flags stored as tensors: metadata, not weights
# a converter: (source, key plan) -> (target key, tensor) pairs, reading each source tensor once
Plan = Mapping[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]
Shape = tuple[int, ...]
M = TypeVar("M", bound=torch.nn.Module)


class Source(Protocol):
    """What plans are checked against: a ``TensorSource``, or a ``meta.MetaSource`` (names and shapes only)."""

    origin: Path

    def keys(self) -> list[str]: ...

    def __contains__(self, key: str) -> bool: ...

    def shape(self, key: str) -> Shape: ...

    def shapes(self) -> dict[str, Shape]: ...


class TensorSource:
    """Named tensors of one weights file or folder, with an optional key prefix removed."""

    def __init__(self, path: Path) -> None:
        self.origin = Path(path)
        self.prefix = ""
        self._stack = ExitStack()
        self._readers = [self._reader(f) for f in files_of(self.origin)]
        self._index("")

    @classmethod
    def open(cls, path: Path, prefixes: Iterable[str] = ("",),
             marker: str | tuple[str, ...] | None = None) -> TensorSource:
        """A weights file or folder. ``prefixes`` are tried in order; the first under which ``marker``
        exists is stripped, so a checkpoint saved as ``model.diffusion_model.<key>`` reads like the bare
        model. Several markers (one per layout) are tried in turn. The files are opened once whatever
        the prefix (a legacy pickle is read only once)."""
        src = cls(path)
        full = {k for r in src._readers for k in r.keys()}
        for m in (marker,) if isinstance(marker, str) else marker or ():
            p = next((p for p in prefixes if p + m in full), None)
            if p is not None:
                src._index(p)
                break
        return src  # with no match the caller reports what it was looking for

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- reading

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> Shape:
        return self._where[key].shape(self.prefix + key)

    def shapes(self) -> dict[str, Shape]:
        return {k: self.shape(k) for k in self._where}

    def get(self, key: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor as a plain tensor (a quantised one dequantised); floating-point ones cast to
        ``dtype`` when given (integer buffers stay)."""
        t = self.read(key)
        if isinstance(t, Packed):
            return t.dequantize(dtype or torch.float32)
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        return t

    def read(self, key: str) -> torch.Tensor | Packed:
        """One tensor as stored: GGUF-quantised ones stay ``Packed``."""
        return self._where[key].get(self.prefix + key)

    def dtypes(self) -> dict[str, str]:
        """Each tensor's stored type: a torch dtype name, or the GGML type of a GGUF tensor."""
        return {k: self._where[k].dtype(self.prefix + k) for k in self._where}

    def metadata(self) -> dict[str, str]:
        for reader in self._readers:
            meta = reader.metadata()
            if meta:
                return dict(meta)
        return {}

    # -------------------------------------------------------------------------------- internals

    def _index(self, prefix: str) -> None:
        self.prefix = prefix
        self._where: dict[str, Reader] = {}  # stripped key -> its file
        self.markers: dict[str, torch.Tensor] = {}  # e.g. scaled_fp8 -> its (empty) tensor
        for reader in self._readers:
            for k in reader.keys():
                if k.startswith(prefix):
                    name = k[len(prefix):]
                    if name in MARKERS:
                        t = reader.get(k)
                        assert isinstance(t, torch.Tensor)
                        self.markers[name] = t
                    else:
                        self._where[name] = reader

    def _reader(self, f: Path) -> Reader:
        try:
            return open_reader(f, self._stack)
        except WrongWeights:
            self._stack.close()
            raise


def read_state_dict(path: Path) -> dict[str, Any]:
    """A whole small file as saved, wrappers and all (spandrel and the face detector unwrap BasicSR's
    ``{"params": …}`` and friends themselves); not memory-mapped, so the file is not held open."""
    path = Path(path)
    check_suffix(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES + GGUF_SUFFIXES:
        with TensorSource(path) as src:
            return {k: src.get(k) for k in src.keys()}
    sd = read_pickle(path, mmap=False)
    if not isinstance(sd, dict):
        raise WrongWeights(path, f"holds a {type(sd).__name__}, not a dictionary of tensors.")
    return sd


# ------------------------------------------------------------------------------------- checking


def check_tensors(origin: Path | str, found: Mapping[str, Shape] | Collection[str],
                  expected: Mapping[str, Shape] | Collection[str], reason: str, *,
                  ignore: Collection[str] = ()) -> None:
    """One ``WrongWeights`` naming every missing, unexpected (and not ignored) and mis-shaped tensor:
    diffusers/accelerate would load a wrong file silently. Shapes are compared when both sides have them;
    ``reason`` says what the file is not ("does not match a T5 encoder")."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - set(ignore))
    wrong = []
    if isinstance(found, Mapping) and isinstance(expected, Mapping):
        wrong = [f"{k} {list(found[k])} (needs {list(s)})"
                 for k, s in expected.items() if k in found and tuple(found[k]) != tuple(s)]
    if missing or unexpected or wrong:
        if wrong:
            reason += f"; tensors of the wrong shape ({len(wrong)}): " + ", ".join(wrong[:10])
            reason += " …" if len(wrong) > 10 else ""
        raise WrongWeights(origin, reason + ".", missing, unexpected)


# ------------------------------------------------------------------------------------ streaming


def converted(source: TensorSource | Any, plan: Plan, dtype: torch.dtype, device: torch.device | str = "cpu",
              cast: Callable[[str, torch.Tensor], torch.dtype] | None = None,
              ) -> Iterator[tuple[str, torch.Tensor | Packed]]:
    """(target key, tensor) for every plan entry, each source tensor read once and cast right away.

    Entries sharing a source (a fused qkv split three ways) are produced together, so the fused
    tensor is read, cast to ``dtype`` (halving fp32 at once) and dropped before the next read.
    ``cast(target, tensor)`` may choose another floating dtype per target (fp8 kept as fp8);
    GGUF-quantised tensors stay ``Packed``, the plan's row ops applied to their bytes.
    """
    by_source: dict[str, list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]] = {}
    for target, (src, op) in plan.items():
        by_source.setdefault(src, []).append((target, op))
    for src, targets in by_source.items():
        t = source.read(src)
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            t = t.to(cast(targets[0][0], t) if cast is not None else dtype)
        done: dict[Callable[[torch.Tensor], torch.Tensor], torch.Tensor | Packed] = {}
        for target, op in targets:
            # q/k/v slices along dim 0 are contiguous views sharing the fused tensor's memory (no
            # copy); the same (source, op) twice (tied embeddings) gives one tensor, not two copies
            if op not in done:
                done[op] = t.map(op).to(device) if isinstance(t, Packed) else op(t).contiguous().to(device)
            yield target, done[op]
        del t, done


def same(t: torch.Tensor) -> torch.Tensor:
    """The plan op of a tensor the model takes as the file stores it."""
    return t


def identity_plan(keys: Iterable[str]) -> dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """A plan for a file already in the model's own names."""
    return {k: (k, same) for k in keys}


def with_scales(plan: Plan, available: Collection[str]) -> dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """``plan`` plus, for every weight whose source has ComfyUI scaled-fp8 scales (``<layer>.scale_weight``
    / ``.scale_input``), the scales under the target layer's name (one per-tensor scale serves all the
    rows a fused weight is split into)."""
    out = dict(plan)
    for target, (src, _op) in plan.items():
        if target.endswith(".weight") and src.endswith(".weight"):
            for suffix in SCALE_SUFFIXES:
                if src[: -len(".weight")] + suffix in available:
                    out.setdefault(target[: -len(".weight")] + suffix, (src[: -len(".weight")] + suffix, same))
    return out


def predicted_shapes(source: Source, plan: Plan) -> dict[str, tuple[int, ...]]:
    """The shape each plan entry will have, computed on the meta device (no data read)."""
    return {t: tuple(op(torch.empty(source.shape(src), device="meta")).shape) for t, (src, op) in plan.items()}


def stream_into(model: M, source: TensorSource | Any, plan: Plan, *, dtype: torch.dtype,
                device: torch.device | str = "cpu", what: str,
                rebuild: Callable[[M], None] | None = None, zero_if_absent: Collection[str] = (),
                fp8: Fp8Policy = "upcast") -> M:
    """Fill a meta-device ``model`` from ``source`` through ``plan``; every parameter must be set.

    Keys and shapes are checked before any tensor is read, so a wrong file fails in milliseconds.
    ``rebuild`` recreates non-persistent buffers (not in any file) that meta construction left empty;
    ``zero_if_absent`` names bookkeeping buffers older files may lack (BatchNorm's step counter), zeroed.
    GGUF-quantised Linear weights stay quantised (``quant.QuantLinear``); ``fp8`` says what happens to
    float8 Linear weights: ``upcast`` to ``dtype`` now, ``keep`` them float8 (``quant.CastLinear``, upcast
    per call), or ``cast`` every Linear weight to float8 (ComfyUI's weight_dtype fp8_e4m3fn).
    """
    state_meta = model.state_dict()
    absent = {k for k in zero_if_absent if k in state_meta and k not in plan}
    expected = {k: tuple(v.shape) for k, v in state_meta.items() if k not in absent}
    scales = scale_keys(plan.keys(), expected.keys())  # scaled-fp8 scales, loaded with their weights
    # keys first: a plan op may not even run on the shape of a tensor the model does not have
    check_tensors(source.origin, plan.keys(), expected.keys(), f"does not match {what}", ignore=scales)
    check_tensors(source.origin, predicted_shapes(source, plan), expected, f"does not match {what}",
                  ignore=scales)
    linear_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}

    def cast(target: str, t: torch.Tensor) -> torch.dtype:
        if target in scales:
            return torch.float32
        if target in linear_weights and fp8 != "upcast" and t.dtype in FP8:
            return t.dtype
        if target in linear_weights and fp8 == "cast":
            return torch.float8_e4m3fn
        return dtype

    state = adapt(model, dict(converted(source, plan, dtype, device, cast)), dtype, fp8)
    state.update({k: torch.zeros(state_meta[k].shape, dtype=state_meta[k].dtype, device=device) for k in absent})
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if rebuild is not None:
        rebuild(model)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left and torch.device(device).type != "meta":  # loading onto meta is a dry run (full-size layouts)
        raise WrongWeights(source.origin, f"left {what} incomplete: {', '.join(left[:10])} were never loaded.")
    model.requires_grad_(False)
    return model.eval()
