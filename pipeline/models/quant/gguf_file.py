"""GGUF files as a tensor source: city96/ComfyUI-GGUF's layout for diffusion models.

ComfyUI-GGUF's ``tools/convert.py`` writes a model's own state-dict names (FLUX: BFL's
``double_blocks.N…``, prefix stripped) with reversed dimensions (ggml order); llama.cpp's patched
``llama-quantize`` then quantises the big weights (Q8_0, Q5_K, Q4_K, Q4_0…) and keeps 1-D tensors and
tensors of at most 1024 values in F32, and FLUX's ``img_in``/``txt_in``/``time_in``/``vector_in``/
``guidance_in``/``final_layer`` in the source precision (F16/BF16). SDXL-like models may store a
``comfy.gguf.orig_shape.<name>`` array for tensors reshaped to whole blocks.

The header is parsed with the ``gguf`` package; tensor data is then read with plain file reads into
tensors this process owns (no memory map stays behind), one tensor at a time, so loading needs about
the file's size in RAM. Quantised tensors come back as ``Packed`` (still quantised); F32/F16/BF16 as
ordinary tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import WrongWeights
from . import dequant as dq
from .layers import Packed

SUFFIXES = (".gguf",)
ORIG_SHAPE = "comfy.gguf.orig_shape."


@dataclass(frozen=True)
class Entry:
    offset: int  # absolute byte offset of the data in the file
    nbytes: int
    qtype: int
    shape: tuple[int, ...]  # logical (torch-order) shape
    reshaped: bool  # stored in another shape (orig_shape metadata): cannot stay packed row by row


class GgufFile:
    """One GGUF file: names, shapes and types from the header; ``get`` reads one tensor."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            from gguf import GGUFReader

            reader = GGUFReader(str(self.path))
        except (ValueError, OSError, KeyError, IndexError) as e:
            raise WrongWeights(self.path, f"cannot be read as a GGUF file: it is damaged or incomplete (an "
                                          f"interrupted download?); download it again ({e}).") from None
        self._meta = {"gguf.architecture": _string(reader, "general.architecture") or ""}
        self.entries: dict[str, Entry] = {}
        unreadable: list[str] = []
        for t in reader.tensors:
            qtype = int(t.tensor_type)
            stored = tuple(int(d) for d in reversed(t.shape.tolist()))
            orig = _int_array(reader, ORIG_SHAPE + t.name)
            if qtype not in dq.BLOCKS and qtype not in dq.PLAIN:
                unreadable.append(f"{t.name} ({getattr(t.tensor_type, 'name', qtype)})")
            self.entries[t.name] = Entry(int(t.data_offset), int(t.n_bytes), qtype, orig or stored,
                                         reshaped=orig is not None and orig != stored)
        del reader  # drops the memory map: data is read below with ordinary file reads
        if unreadable:
            readable = ", ".join(dq.NAMES[q] for q in (*dq.BLOCKS, *dq.PLAIN))
            raise WrongWeights(self.path, f"uses tensor types Dermis cannot read: {', '.join(unreadable[:5])}"
                                          f"{' …' if len(unreadable) > 5 else ''}. Readable types: {readable}; "
                                          "use a Q8_0, Q5_K, Q4_K or Q4_0 file.")
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close(), as safetensors handles are

    def close(self) -> None:
        self._file.close()

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key].shape

    def qtype(self, key: str) -> int:
        return self.entries[key].qtype

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    def get(self, key: str) -> torch.Tensor | Packed:
        e = self.entries[key]
        raw = torch.empty(e.nbytes, dtype=torch.uint8)
        self._read_into(raw, e.offset)
        if e.qtype in dq.PLAIN:
            return raw.view(dq.PLAIN[e.qtype]).reshape(e.shape)
        if e.reshaped or len(e.shape) == 0:
            return dq.dequantize(raw, e.qtype, e.shape)
        return Packed(raw.view(*e.shape[:-1], dq.row_bytes(e.shape[-1], e.qtype)), e.qtype, e.shape)

    def _read_into(self, out: torch.Tensor, offset: int) -> None:
        view = out.numpy().data.cast("B")
        self._file.seek(offset)
        done = 0
        while done < len(view):
            n = self._file.readinto(view[done:])
            if not n:
                raise WrongWeights(self.path, "is truncated: a tensor's data runs past the end of the file.")
            done += n


def _field(reader: Any, key: str) -> Any:
    return reader.fields.get(key)


def _string(reader: Any, key: str) -> str | None:
    f = _field(reader, key)
    if f is None or not f.data:
        return None
    return bytes(f.parts[f.data[-1]]).decode("utf-8", errors="replace")


def _int_array(reader: Any, key: str) -> tuple[int, ...] | None:
    f = _field(reader, key)
    if f is None:
        return None
    return tuple(int(f.parts[i][0]) for i in f.data)
