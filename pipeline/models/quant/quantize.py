"""Writing GGUF files in ComfyUI-GGUF's layout (tiny test models, the benchmark's full-size files).

Q4_0, Q4_1, Q5_0, Q5_1 and BF16 come from the ``gguf`` package's numpy quantisers (bit-exact with
ggml's reference); Q8_0 is the same arithmetic in torch (multi-threaded, for 12B-parameter files; the
tests compare its bytes with the package's). The package has no K-quant quantiser, so Q4_K and Q5_K are
written here with the simple
min/max rule (per 32-value sub-block: scale = (max - min) / levels, then 6-bit scales and mins relative
to the block's largest); llama.cpp searches for better scales, so its files are a little more accurate,
but the bytes mean the same thing to any reader.

Which tensor gets which type follows ComfyUI-GGUF's tools (convert.py + lcpp.patch): 1-D tensors and
tensors of at most 1024 values F32; names a family keeps at full precision (FLUX: ``img_in.``,
``txt_in.``…) in the source precision (BF16); the rest the file's type, except K-quants on rows that
are not whole 256-value blocks (F16 instead), and in ``Q4_K_M`` files the fused attention ``qkv``
weights one step up (Q5_K).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import numpy as np
import torch

from . import dequant as dq

QUANTISERS = {"Q8_0": dq.Q8_0, "Q4_0": dq.Q4_0, "Q4_1": dq.Q4_1, "Q5_0": dq.Q5_0, "Q5_1": dq.Q5_1,
              "Q4_K": dq.Q4_K, "Q5_K": dq.Q5_K}
FILE_TYPES = ("Q8_0", "Q4_0", "Q4_K_S", "Q4_K_M", "Q5_K_S", "BF16", "F16")
SMALL = 1024  # tensors of at most this many values stay F32 (convert.py's QUANTIZATION_THRESHOLD)
Manifest = list[tuple[str, tuple[int, ...], int]]  # (name, logical shape, ggml type)


def layout_type(name: str, shape: tuple[int, ...], file_type: str, keep: Collection[str]) -> int:
    """The ggml type ComfyUI-GGUF's converter + quantiser give tensor ``name`` in a ``file_type`` file."""
    if file_type not in FILE_TYPES:
        raise ValueError(f"file type {file_type!r}; one of {', '.join(FILE_TYPES)}")
    if len(shape) <= 1 or int(np.prod(shape)) <= SMALL:
        return dq.F32
    if file_type in ("BF16", "F16") or any(k in name for k in keep):
        return dq.F16 if file_type == "F16" else dq.BF16
    base = file_type.removesuffix("_S").removesuffix("_M")
    qtype = QUANTISERS[base]
    if file_type == "Q4_K_M" and "attn.qkv.weight" in name:
        qtype = dq.Q5_K
    block, _ = dq.BLOCKS[qtype]
    if shape[-1] % block:
        return dq.F16  # lcpp.patch's fallback for rows that are not whole blocks
    return qtype


def quantise(t: torch.Tensor, qtype: int) -> np.ndarray:
    """``t`` in ggml type ``qtype``: float32/float16 arrays for F32/F16, uint8 block rows otherwise."""
    if qtype == dq.Q8_0:
        return _q8_0(t.detach().float().cpu())
    x = t.detach().float().cpu().numpy()
    if qtype == dq.F32:
        return x
    if qtype == dq.F16:
        return x.astype(np.float16)
    if qtype in (dq.Q4_K, dq.Q5_K):
        return _k_quant(x, 15 if qtype == dq.Q4_K else 31)
    import gguf

    return gguf.quants.quantize(x, gguf.GGMLQuantizationType(qtype))


def _q8_0(x: torch.Tensor) -> np.ndarray:
    """ggml's quantize_row_q8_0: d = absmax/127 per 32 values, q = round-half-away(x/d), d stored fp16."""
    b = x.reshape(-1, 32)
    d = b.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    n = b * inv
    a = n.abs()
    q = (torch.sign(n) * (a.floor() + torch.floor(2 * (a - a.floor())))).to(torch.int8)
    out = torch.cat([d.half().view(torch.uint8), q.view(torch.uint8)], dim=1)
    return out.reshape(*x.shape[:-1], -1).numpy()


def _k_quant(x: np.ndarray, levels: int) -> np.ndarray:
    """Q4_K (levels 15) / Q5_K (31) blocks of 256 values, rows of whole blocks."""
    lead = x.shape[:-1]
    b = x.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(b.min(axis=-1), 0.0)
    scale = (b.max(axis=-1) - lo) / levels
    mins = -lo
    d = (scale.max(axis=-1) / 63).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63).astype(np.float16)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.rint(scale / d[:, None].astype(np.float32)), 0).clip(0, 63).astype(np.uint8)
        mn = np.where(dmin[:, None] > 0, np.rint(mins / dmin[:, None].astype(np.float32)), 0).clip(0, 63).astype(np.uint8)
        eff = d[:, None].astype(np.float32) * sc
        off = dmin[:, None].astype(np.float32) * mn
        q = np.where(eff[..., None] > 0, np.rint((b + off[..., None]) / eff[..., None]), 0).clip(0, levels)
    q = q.astype(np.uint8)
    packed = np.empty((b.shape[0], 12), dtype=np.uint8)  # the inverse of dequant._k_scales
    packed[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = mn[:, :4] | ((mn[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    low = q & 0x0F
    qs = (low[:, 0::2, :] | (low[:, 1::2, :] << 4)).reshape(-1, 128)
    parts = [d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8), packed]
    if levels == 31:
        high = (q >> 4) & 1  # (n, 8 sub-blocks, 32): bit s of byte l
        qh = np.zeros((b.shape[0], 32), dtype=np.uint8)
        for s in range(8):
            qh |= high[:, s, :] << s
        parts.append(qh)
    parts.append(qs)
    return np.concatenate(parts, axis=1).reshape(*lead, -1)


def manifest(shapes: Iterable[tuple[str, tuple[int, ...]]], file_type: str, keep: Collection[str]) -> Manifest:
    return [(name, tuple(shape), layout_type(name, tuple(shape), file_type, keep)) for name, shape in shapes]


def write_gguf(path: Path, arch: str, tensors: Manifest, data: Callable[[str], torch.Tensor],
               file_type: str = "") -> Path:
    """Write a GGUF file tensor by tensor (``data(name)`` is asked for each one in turn, so a
    full-size file never has to sit in memory)."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path=None, arch=arch)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if file_type:
        w.add_string("general.file_type_name", file_type)
    for name, shape, qtype in tensors:
        if qtype in (dq.F32, dq.F16):
            np_dtype = np.dtype(np.float32 if qtype == dq.F32 else np.float16)
            w.add_tensor_info(name, shape, np_dtype, int(np.prod(shape)) * np_dtype.itemsize)
        else:
            nbytes = int(np.prod(shape[:-1], dtype=np.int64)) * _row_bytes(shape[-1], qtype)
            w.add_tensor_info(name, (*shape[:-1], _row_bytes(shape[-1], qtype)), np.dtype(np.uint8), nbytes,
                              raw_dtype=gguf.GGMLQuantizationType(qtype))
    w.write_header_to_file(path=path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, _shape, qtype in tensors:
        w.write_tensor_data(quantise(data(name), qtype))
    w.close()
    return path


def _row_bytes(n: int, qtype: int) -> int:
    return 2 * n if qtype == dq.BF16 else dq.row_bytes(n, qtype)
