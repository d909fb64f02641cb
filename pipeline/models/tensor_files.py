"""Reading weights tensor by tensor: the one reading layer every model family uses.

Accepted: one ``.safetensors`` file, a folder of them (sharded with an index, or single), or one
pickled ``.ckpt``/``.pth``/``.pt``/``.bin`` (SUPIR-v0Q.ckpt, upscalers, face models). Nothing that runs
code is ever loaded: pickles go through ``torch.load(weights_only=True)``.

Big checkpoints (the fp32 SRPO transformer is 47.6 GB, SUPIR-v0Q.ckpt 5 GB) must never be read whole:
``TensorSource`` gives key names and shapes from the safetensors headers without reading data, and
``get`` reads one tensor. Pickles in the zip format are memory-mapped, so only the tensors asked for
come into RAM (the legacy format cannot be mapped and is read whole). ``stream_into`` builds a model on
the meta device and fills it one converted, cast tensor at a time, so host memory holds at most the
finished model plus the one tensor being converted. Missing, unexpected and mis-shaped keys are checked
before any data is read, and fail with ``WrongWeights`` naming the file and the keys.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from ..errors import WrongWeights

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
# training checkpoints nest the weights: Lightning's {"state_dict": …}, BasicSR's {"params_ema": …} /
# {"params": …}, others' {"model": …}; unwrapped in this order (a wrapper inside a wrapper too)
WRAPPERS = ("state_dict", "params_ema", "params", "model")
VARIANTS = ("fp16", "bf16", "fp32", "fp8", "non_ema", "ema")  # Hub folders' <name>.<variant>.safetensors
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
        self._readers = [self._reader(f) for f in _files_of(self.origin)]
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
        """One tensor; floating-point ones cast to ``dtype`` when given (integer buffers stay)."""
        t = self._where[key].get(self.prefix + key)
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        return t

    def metadata(self) -> dict[str, str]:
        for reader in self._readers:
            meta = reader.metadata()
            if meta:
                return dict(meta)
        return {}

    # -------------------------------------------------------------------------------- internals

    def _index(self, prefix: str) -> None:
        self.prefix = prefix
        self._where: dict[str, _Safetensors | _Tensors] = {}  # stripped key -> its file
        for reader in self._readers:
            for k in reader.keys():
                if k.startswith(prefix):
                    self._where[k[len(prefix):]] = reader

    def _reader(self, f: Path) -> _Safetensors | _Tensors:
        if f.suffix.lower() in PICKLE_SUFFIXES:
            return _Tensors(_pickled_tensors(f))
        from safetensors import safe_open

        try:
            return _Safetensors(self._stack.enter_context(safe_open(str(f), framework="pt", device="cpu")))
        except Exception as e:  # safetensors raises its own error types (SafetensorError, OSError…)
            self._stack.close()
            raise WrongWeights(f, f"cannot be read as a safetensors file ({e}).") from None


class _Safetensors:
    """One open safetensors file: the header gives keys and shapes, data is read per tensor."""

    def __init__(self, handle: Any) -> None:
        self._h = handle

    def keys(self) -> list[str]:
        return list(self._h.keys())

    def shape(self, key: str) -> Shape:
        return tuple(self._h.get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        return self._h.get_tensor(key)

    def metadata(self) -> dict[str, str]:
        return self._h.metadata() or {}


class _Tensors:
    """The tensors of a pickled file (memory-mapped where its format allows)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._t = tensors

    def keys(self) -> list[str]:
        return list(self._t)

    def shape(self, key: str) -> Shape:
        return tuple(self._t[key].shape)

    def get(self, key: str) -> torch.Tensor:
        return self._t[key]

    def metadata(self) -> dict[str, str]:
        return {}


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        _check_suffix(path)
        return [path]
    if path.is_dir():
        index = _plain(sorted(path.glob("*.safetensors.index.json")), ".safetensors.index.json")
        if index:
            try:
                weight_map = json.loads(index[0].read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError) as e:
                raise WrongWeights(index[0], f"is not a valid safetensors index ({e}).") from None
            files = [path / name for name in dict.fromkeys(weight_map.values())]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise WrongWeights(path, f"lacks the shard files {', '.join(absent)} named in {index[0].name}.")
            return files
        files = _plain(sorted(f for f in path.iterdir() if f.suffix.lower() in SAFETENSORS_SUFFIXES), "")
        if files:
            return files
        raise WrongWeights(path, "holds no .safetensors weights.")
    raise WrongWeights(path, "does not exist.")


def _plain(files: list[Path], ending: str) -> list[Path]:
    """The files without a precision variant (``model.fp16.safetensors`` next to ``model.safetensors``,
    as Hub folders keep both; diffusers and transformers read the plain one by default), when there are
    any plain ones."""
    def variant(f: Path) -> bool:
        stem = f.name[: -len(ending)] if ending else f.stem
        return stem.rpartition(".")[2] in VARIANTS

    plain = [f for f in files if not variant(f)]
    return plain or files


def _check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        hint = " GGUF files are not supported; use a .safetensors file." if suffix == ".gguf" else ""
        raise WrongWeights(path, f"unknown model file type '{suffix}' (use .safetensors, .ckpt or .pth).{hint}")


# ------------------------------------------------------------------------------------- pickles


def read_pickle(path: Path, *, mmap: bool = True) -> Any:
    """What a ``.ckpt``/``.pth`` holds, unpickled with ``weights_only=True`` (tensors, containers and
    plain values only: a pickle that wants to import and call something is refused, never run).

    ``mmap`` maps zip-format files so their tensors are read only when used; legacy files are read whole.
    """
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not mmap or ("mmap" not in str(e).lower() and "zip" not in str(e).lower()):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln), "")
        if detail:  # a pickle that wants to import and call something: never let it
            raise WrongWeights(
                path, f"contains Python objects other than tensors, so it is not loaded for safety ({detail})."
            ) from None
        raise WrongWeights(path, "cannot be read as model weights (not a PyTorch checkpoint).") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise WrongWeights(path, f"cannot be read as model weights ({e}).") from None


def _pickled_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickled checkpoint by key, training wrappers (``WRAPPERS``) unwrapped."""
    sd = read_pickle(path)
    for wrapper in WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise WrongWeights(path, f"holds a {type(sd).__name__}, not a dictionary of tensors.")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WrongWeights(path, "holds no tensors.")
    return tensors


def read_state_dict(path: Path) -> dict[str, Any]:
    """A whole small file as saved, wrappers and all (spandrel and the face detector unwrap BasicSR's
    ``{"params": …}`` and friends themselves); not memory-mapped, so the file is not held open."""
    path = Path(path)
    _check_suffix(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
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


def converted(source: TensorSource, plan: Plan, dtype: torch.dtype,
              device: torch.device | str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    """(target key, tensor) for every plan entry, each source tensor read once and cast right away.

    Entries sharing a source (a fused qkv split three ways) are produced together, so the fused
    tensor is read, cast to ``dtype`` (halving fp32 at once) and dropped before the next read.
    """
    by_source: dict[str, list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]] = {}
    for target, (src, op) in plan.items():
        by_source.setdefault(src, []).append((target, op))
    for src, targets in by_source.items():
        t = source.get(src)
        if t.is_floating_point():
            t = t.to(dtype)
        done: dict[Callable[[torch.Tensor], torch.Tensor], torch.Tensor] = {}
        for target, op in targets:
            # q/k/v slices along dim 0 are contiguous views sharing the fused tensor's memory (no
            # copy); the same (source, op) twice (tied embeddings) gives one tensor, not two copies
            if op not in done:
                done[op] = op(t).contiguous().to(device)
            yield target, done[op]
        del t, done


def same(t: torch.Tensor) -> torch.Tensor:
    """The plan op of a tensor the model takes as the file stores it."""
    return t


def identity_plan(keys: Iterable[str]) -> dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """A plan for a file already in the model's own names."""
    return {k: (k, same) for k in keys}


def predicted_shapes(source: Source, plan: Plan) -> dict[str, tuple[int, ...]]:
    """The shape each plan entry will have, computed on the meta device (no data read)."""
    return {t: tuple(op(torch.empty(source.shape(src), device="meta")).shape) for t, (src, op) in plan.items()}


def stream_into(model: M, source: TensorSource, plan: Plan, *, dtype: torch.dtype,
                device: torch.device | str = "cpu", what: str,
                rebuild: Callable[[M], None] | None = None, zero_if_absent: Collection[str] = ()) -> M:
    """Fill a meta-device ``model`` from ``source`` through ``plan``; every parameter must be set.

    Keys and shapes are checked before any tensor is read, so a wrong file fails in milliseconds.
    ``rebuild`` recreates non-persistent buffers (not in any file) that meta construction left empty;
    ``zero_if_absent`` names bookkeeping buffers older files may lack (BatchNorm's step counter), zeroed.
    """
    state_meta = model.state_dict()
    absent = {k for k in zero_if_absent if k in state_meta and k not in plan}
    expected = {k: tuple(v.shape) for k, v in state_meta.items() if k not in absent}
    # keys first: a plan op may not even run on the shape of a tensor the model does not have
    check_tensors(source.origin, plan.keys(), expected.keys(), f"does not match {what}")
    check_tensors(source.origin, predicted_shapes(source, plan), expected, f"does not match {what}")
    state = dict(converted(source, plan, dtype, device))
    state.update({k: torch.zeros(state_meta[k].shape, dtype=state_meta[k].dtype, device=device) for k in absent})
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if rebuild is not None:
        rebuild(model)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left:
        raise WrongWeights(source.origin, f"left {what} incomplete: {', '.join(left[:10])} were never loaded.")
    model.requires_grad_(False)
    return model.eval()
