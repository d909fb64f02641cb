"""Read single-file checkpoints without executing code and without holding them twice in memory.

``.safetensors`` is opened lazily (only the header is read until a tensor is asked for), so the key
names and shapes of a 7 GB SDXL file cost nothing. Pickled files (``.ckpt``/``.pth``/``.pt``/``.bin``)
go through ``torch.load(weights_only=True)``, memory-mapped when the file is in the zip format, so
a 5 GB fp32 SUPIR-v0Q.ckpt does not need 5 GB of RAM before the first tensor is cast. A Lightning
style ``{"state_dict": {...}}`` wrapper is unwrapped.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import WrongWeights

PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")


class Checkpoint:
    """Tensors of one model file by key: ``shape(key)``, ``get(key, dtype)``, ``keys()``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._safe: Any = None
        self._dict: dict[str, torch.Tensor] | None = None
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise WrongWeights(self.path, "is not a file.")
        try:
            if suffix == ".safetensors":
                from safetensors import safe_open

                self._safe = safe_open(str(self.path), framework="pt", device="cpu")
                self._keys = list(self._safe.keys())
            elif suffix in PICKLE_SUFFIXES:
                self._dict = _load_pickle(self.path)
                self._keys = list(self._dict)
            else:
                raise WrongWeights(self.path, f"unknown model file type '{suffix}' (use .safetensors or .ckpt).")
        except WrongWeights:
            raise
        except pickle.UnpicklingError as e:
            raise WrongWeights(
                self.path, f"contains Python objects other than tensors, so it is not loaded for safety ({e})."
            ) from None
        except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
            raise WrongWeights(self.path, f"cannot be read as model weights ({e}).") from None

    def keys(self) -> list[str]:
        return list(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._shape_cache()

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shape_cache()[key]

    def shapes(self, prefix: str = "") -> dict[str, tuple[int, ...]]:
        """{key without prefix: shape} for every key under ``prefix``."""
        n = len(prefix)
        return {k[n:]: s for k, s in self._shape_cache().items() if k.startswith(prefix)}

    def get(self, key: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        t = self._safe.get_tensor(key) if self._safe is not None else self._dict[key]
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        return t

    def items(self, keys: Iterable[str], dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        for k in keys:
            yield k, self.get(k, dtype)

    def _shape_cache(self) -> dict[str, tuple[int, ...]]:
        if not hasattr(self, "_shapes"):
            if self._safe is not None:
                self._shapes = {k: tuple(self._safe.get_slice(k).get_shape()) for k in self._keys}
            else:
                self._shapes = {k: tuple(v.shape) for k, v in self._dict.items()}
        return self._shapes


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd: Any = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e).lower() and "zip" not in str(e).lower():
            raise
        sd = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WrongWeights(path, f"holds a {type(sd).__name__}, not a dictionary of tensors.")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WrongWeights(path, "holds no tensors.")
    return tensors
