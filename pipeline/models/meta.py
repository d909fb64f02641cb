"""The meta device: modules built without memory, and key manifests that stand in for files.

Full-size layouts (the 12B FLUX transformer, SDXL) are checked key by key and shape by shape with no
memory at all: ``empty`` builds the module, ``MetaSource`` holds a manifest's names and shapes, and
``tensor_files.predicted_shapes`` runs a plan's ops on meta tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import torch

from .quant import Packed

M = TypeVar("M", bound=torch.nn.Module)


def empty(factory: Callable[[], M]) -> M:
    """Build a module with its parameters on the meta device (no memory, no random init), buffers real."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory()


def built(model: object, cls: type[M]) -> M:
    """``model`` as a ``cls``: diffusers types ``from_config`` as maybe returning (model, unused kwargs),
    which it only does when asked to."""
    if not isinstance(model, cls):
        raise TypeError(f"expected a {cls.__name__}, got a {type(model).__name__}")
    return model


class MetaSource:
    """A TensorSource stand-in holding only names and shapes (a key manifest): ``get`` gives meta tensors.

    ``qtypes`` (GGML type per name) makes it a GGUF manifest: ``read`` then gives ``Packed`` meta bytes
    for quantised tensors, so a full-size GGUF layout loads on the meta device (``stream_into`` with
    ``device="meta"`` is a dry run).
    """

    prefix = ""
    markers: dict[str, torch.Tensor] = {}

    def __init__(self, shapes: Mapping[str, Iterable[int]], origin: Path | str = "<manifest>",
                 qtypes: Mapping[str, int] | None = None) -> None:
        self._shapes = {k: tuple(v) for k, v in shapes.items()}
        self.origin = Path(origin)
        self._qtypes = dict(qtypes or {})

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

    def read(self, key: str) -> torch.Tensor | Packed:
        from .quant import dequant as dq

        shape, qtype = self._shapes[key], self._qtypes.get(key)
        if qtype is None or qtype in dq.PLAIN:
            return torch.empty(shape, device="meta", dtype=dq.PLAIN.get(qtype or dq.F32, torch.float32))
        raw = torch.empty((*shape[:-1], dq.row_bytes(shape[-1], qtype)), dtype=torch.uint8, device="meta")
        return Packed(raw, qtype, shape)

    def close(self) -> None:
        pass

    def __enter__(self) -> MetaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
