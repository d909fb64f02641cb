"""Reading weights tensor by tensor: one safetensors file, a sharded folder, or a key-prefixed checkpoint.

Big checkpoints (the fp32 SRPO transformer is 47.6 GB) must never be read whole: ``TensorSource``
gives key names and shapes from the file headers without reading data, and ``get`` reads one tensor.
``stream_into`` builds a model on the meta device and fills it one converted, cast tensor at a time,
so host memory holds at most the finished model plus the one tensor being converted. Missing and
unexpected keys are checked before any data is read, and fail with ``WrongWeights`` naming them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from ..errors import WrongWeights

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# a converter: (source, key plan) -> (target key, tensor) pairs, reading each source tensor once
Plan = Mapping[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]


class TensorSource:
    """Named tensors spread over one or more safetensors files, with an optional key prefix removed."""

    def __init__(self, files: Iterable[Path], origin: Path, prefix: str = "") -> None:
        from safetensors import safe_open

        self.origin = Path(origin)
        self.prefix = prefix
        self._stack = ExitStack()
        self._where: dict[str, Any] = {}  # stripped key -> open file handle
        for f in files:
            try:
                handle = self._stack.enter_context(safe_open(str(f), framework="pt", device="cpu"))
            except Exception as e:  # safetensors raises its own error types (SafetensorError, OSError…)
                self._stack.close()
                raise WrongWeights(f, f"cannot be read as a safetensors file ({e}).") from None
            for k in handle.keys():
                if k.startswith(prefix):
                    self._where[k[len(prefix):]] = handle

    # ---------------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: Path, prefixes: Iterable[str] = ("",), marker: str | None = None) -> TensorSource:
        """A ``.safetensors`` file, or a folder of them (sharded with an index, or a single file).

        ``prefixes`` are tried in order; the first under which ``marker`` exists is stripped, so a
        checkpoint saved as ``model.diffusion_model.<key>`` reads like the bare model.
        """
        path = Path(path)
        files = _files_of(path)
        src = cls(files, path)
        if marker is None:
            return src
        for p in prefixes:
            if p + marker in src._where:
                if p:
                    src.close()
                    src = cls(files, path, prefix=p)
                return src
        return src  # the caller reports what it was looking for

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

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._where[key].get_slice(self.prefix + key).get_shape())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self._where}

    def get(self, key: str) -> torch.Tensor:
        return self._where[key].get_tensor(self.prefix + key)

    def metadata(self) -> dict[str, str]:
        for handle in dict.fromkeys(self._where.values()):
            meta = handle.metadata()
            if meta:
                return dict(meta)
        return {}


class MetaSource:
    """A TensorSource stand-in holding only names and shapes (a key manifest): ``get`` gives meta tensors.

    Lets the full-size layouts (12B transformer) be checked key by key with no memory at all.
    """

    prefix = ""

    def __init__(self, shapes: Mapping[str, Iterable[int]], origin: Path | str = "<manifest>") -> None:
        self._shapes = {k: tuple(v) for k, v in shapes.items()}
        self.origin = Path(origin)

    def keys(self) -> list[str]:
        return list(self._shapes)

    def __contains__(self, key: str) -> bool:
        return key in self._shapes

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def get(self, key: str) -> torch.Tensor:
        return torch.empty(self._shapes[key], device="meta")

    def close(self) -> None:
        pass

    def __enter__(self) -> MetaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
            hint = " GGUF files are not supported; use a .safetensors file." if path.suffix.lower() == ".gguf" else ""
            raise WrongWeights(path, f"is not a .safetensors file.{hint}")
        return [path]
    if path.is_dir():
        index = sorted(path.glob("*.safetensors.index.json"))
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
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in SAFETENSORS_SUFFIXES)
        if files:
            return files
        raise WrongWeights(path, "holds no .safetensors weights.")
    raise WrongWeights(path, "does not exist.")


# ------------------------------------------------------------------------------------- checking


def check_keys(origin: Path, found: Iterable[str], wanted: Iterable[str], what: str) -> None:
    """Fail naming every missing and unexpected key (diffusers/accelerate would load silently)."""
    found, wanted = set(found), set(wanted)
    missing, unexpected = sorted(wanted - found), sorted(found - wanted)
    if missing or unexpected:
        raise WrongWeights(origin, f"does not match {what}.", missing=missing, unexpected=unexpected)


def check_shapes(origin: Path, got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]],
                 what: str) -> None:
    bad = [f"{k} {tuple(got[k])} (expected {tuple(want[k])})" for k in want if k in got
           and tuple(got[k]) != tuple(want[k])]
    if bad:
        raise WrongWeights(origin, f"has tensors of the wrong shape for {what}: " + "; ".join(bad[:10])
                           + (f" … and {len(bad) - 10} more" if len(bad) > 10 else ""))


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


def predicted_shapes(source: TensorSource | MetaSource, plan: Plan) -> dict[str, tuple[int, ...]]:
    """The shape each plan entry will have, computed on the meta device (no data read)."""
    return {t: tuple(op(torch.empty(source.shape(src), device="meta")).shape) for t, (src, op) in plan.items()}


def stream_into(model: torch.nn.Module, source: TensorSource, plan: Plan, *, dtype: torch.dtype,
                device: torch.device | str = "cpu", what: str,
                rebuild: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Fill a meta-device ``model`` from ``source`` through ``plan``; every parameter must be set.

    Keys and shapes are checked before any tensor is read, so a wrong file fails in milliseconds.
    ``rebuild`` recreates non-persistent buffers (not in any file) that meta construction left empty.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(source.origin, plan, expected, what)
    check_shapes(source.origin, predicted_shapes(source, plan), expected, what)
    state = dict(converted(source, plan, dtype, device))
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if rebuild is not None:
        rebuild(model)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left:
        raise WrongWeights(source.origin, f"left {what} incomplete: {', '.join(left[:10])} were never loaded.")
    model.requires_grad_(False)
    return model.eval()
