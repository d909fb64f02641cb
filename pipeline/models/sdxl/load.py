"""Strict, low-memory loading of key-mapped checkpoints into modules built on the meta device.

Modules are built with ``accelerate.init_empty_weights`` (parameters on ``meta``, buffers real), the
file's keys and shapes are checked against the key maps before a single tensor is read, and the
tensors are cast one at a time and assigned in place (``load_state_dict(assign=True)``): a 7 GB SDXL
file never exists twice in RAM. Anything missing, unexpected or of the wrong shape fails with
``WrongWeights`` naming the file and the keys, in the file's own names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ..tensor_files import TensorSource, check_tensors
from .keymap import KeyMap, from_file

M = TypeVar("M", bound=nn.Module)


def empty(factory: Callable[[], M]) -> M:
    """Build a module with its parameters on the meta device (no memory, no random init)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory()


def file_shape(shape: tuple[int, ...], transform: str) -> tuple[int, ...]:
    """The shape a module tensor has in the original file."""
    if transform == "conv1x1":
        return (*shape, 1, 1)
    if transform == "T":
        return tuple(reversed(shape))
    if transform.startswith("chunk"):
        return (3 * shape[0], *shape[1:])
    return shape


def verify(
    path: str | Path,
    shapes: Mapping[str, tuple[int, ...]],
    parts: Sequence[tuple[KeyMap, nn.Module]],
    what: str,
    *,
    whole_file: bool = False,
    ignore: Iterable[str] = (),
) -> None:
    """Every key each map expects is in ``shapes`` with the right shape; with ``whole_file`` every
    key of the file is used by some map (or ignored). Raises WrongWeights listing all problems."""
    expected: dict[str, tuple[int, ...]] = {}
    ignored = set(ignore)
    for km, module in parts:
        state = module.state_dict()
        ignored |= km.ignore
        for mk, (fk, tr) in km.entries.items():
            expected[km.prefix + fk] = file_shape(tuple(state[mk].shape), tr)
    prefixes = tuple(km.prefix for km, _ in parts)
    present = {k: s for k, s in shapes.items() if whole_file or k.startswith(prefixes)}
    check_tensors(path, present, expected, f"is not a complete {what} checkpoint", ignore=ignored)


def assign(module: M, ckpt: TensorSource, km: KeyMap, dtype: torch.dtype) -> M:
    """Load the (already verified) tensors into ``module``, cast to ``dtype``, in inference mode."""
    state = module.state_dict()
    sd = {}
    for mk, (fk, tr) in km.entries.items():
        sd[mk] = from_file(ckpt.get(km.prefix + fk, dtype), tr, tuple(state[mk].shape))
    module.load_state_dict(sd, strict=True, assign=True)
    return module.eval().requires_grad_(False)
