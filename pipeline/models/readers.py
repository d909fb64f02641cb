"""The file formats behind ``tensor_files.TensorSource``: one reader per format, all with the same
face (``keys``, ``shape``, ``get``, ``dtype``, ``metadata``), and the rules for which files a path means.

- safetensors: the header gives names and shapes, data is read per tensor;
- pickles (``.ckpt``/``.pth``/``.pt``/``.bin``): ``torch.load(weights_only=True)``, memory-mapped when the
  zip format allows, training wrappers unwrapped;
- GGUF: ``quant.gguf_file`` (quantised tensors come back ``Packed``).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from ..errors import WrongWeights
from .quant import Packed
from .quant.gguf_file import SUFFIXES as GGUF_SUFFIXES
from .quant.gguf_file import GgufFile

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
# training checkpoints nest the weights: Lightning's {"state_dict": …}, BasicSR's {"params_ema": …} /
# {"params": …}, others' {"model": …}; unwrapped in this order (a wrapper inside a wrapper too)
WRAPPERS = ("state_dict", "params_ema", "params", "model")
VARIANTS = ("fp16", "bf16", "fp32", "fp8", "non_ema", "ema")  # Hub folders' <name>.<variant>.safetensors
Shape = tuple[int, ...]


class Safetensors:
    """One open safetensors file: the header gives keys and shapes, data is read per tensor."""

    def __init__(self, handle: Any) -> None:
        self._h = handle

    def keys(self) -> list[str]:
        return list(self._h.keys())

    def shape(self, key: str) -> Shape:
        return tuple(self._h.get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        return self._h.get_tensor(key)

    def dtype(self, key: str) -> str:
        return str(self._h.get_slice(key).get_dtype())

    def metadata(self) -> dict[str, str]:
        return self._h.metadata() or {}


class Tensors:
    """The tensors of a pickled file (memory-mapped where its format allows)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._t = tensors

    def keys(self) -> list[str]:
        return list(self._t)

    def shape(self, key: str) -> Shape:
        return tuple(self._t[key].shape)

    def get(self, key: str) -> torch.Tensor:
        return self._t[key]

    def dtype(self, key: str) -> str:
        return str(self._t[key].dtype).removeprefix("torch.")

    def metadata(self) -> dict[str, str]:
        return {}


class Gguf:
    """One GGUF file (``quant.gguf_file``): quantised tensors are read as ``Packed``."""

    def __init__(self, f: GgufFile) -> None:
        self._f = f

    def keys(self) -> list[str]:
        return self._f.keys()

    def shape(self, key: str) -> Shape:
        return self._f.shape(key)

    def get(self, key: str) -> torch.Tensor | Packed:
        return self._f.get(key)

    def dtype(self, key: str) -> str:
        from .quant.dequant import NAMES

        return NAMES[self._f.qtype(key)]

    def metadata(self) -> dict[str, str]:
        return self._f.metadata()

    def close(self) -> None:
        self._f.close()


Reader = Safetensors | Tensors | Gguf


def open_reader(f: Path, stack: ExitStack) -> Reader:
    """The reader for one file; open handles are closed with ``stack``."""
    if f.suffix.lower() in PICKLE_SUFFIXES:
        return Tensors(pickled_tensors(f))
    if f.suffix.lower() in GGUF_SUFFIXES:
        reader = Gguf(GgufFile(f))
        stack.callback(reader.close)
        return reader
    from safetensors import safe_open

    try:
        return Safetensors(stack.enter_context(safe_open(str(f), framework="pt", device="cpu")))
    except Exception as e:  # safetensors raises its own error types (SafetensorError, OSError…)
        raise WrongWeights(f, f"cannot be read as a safetensors file ({e}).") from None


def files_of(path: Path) -> list[Path]:
    if path.is_file():
        check_suffix(path)
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


def check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES + GGUF_SUFFIXES:
        raise WrongWeights(path, f"unknown model file type '{suffix}' (use .safetensors, .gguf, .ckpt or .pth).")


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


def pickled_tensors(path: Path) -> dict[str, torch.Tensor]:
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


