"""GGML block formats -> float32, in torch, on whatever device the bytes are (ComfyUI-GGUF's approach:
weights stay quantised in memory and each layer is dequantised when it runs).

A quantised tensor of logical shape (..., n) is stored row by row: each row is n / block_size blocks of
type_size bytes. Layouts (ggml's ``ggml-common.h``; the same ones the ``gguf`` package's numpy
``gguf.quants`` reads, which the tests use as the independent reference):

- ``Q8_0`` (32 values, 34 bytes): fp16 scale d, 32 int8 q; x = d * q.
- ``Q4_0`` (32, 18): d, 16 bytes of nibbles (low nibbles = values 0-15, high = 16-31); x = d * (q - 8).
- ``Q4_1`` (32, 20): d, m, nibbles; x = d * q + m.
- ``Q5_0`` (32, 22) / ``Q5_1`` (32, 24): as Q4_0 / Q4_1 plus a 32-bit word of fifth bits; q - 16 / d*q + m.
- ``Q4_K`` (256, 144): d, dmin, 12 bytes of eight 6-bit (scale, min) pairs, 128 bytes of nibbles (per 64
  values: low nibbles = first sub-block of 32, high = second); x = d*sc*q - dmin*m.
- ``Q5_K`` (256, 176): as Q4_K plus 32 bytes of fifth bits (bit s of byte l: sub-block s, value l).
- ``Q6_K`` (256, 210): 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales, d; x = d*sc*(q - 32).

Every product is formed in the same order as the reference so results match it bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

QK_K = 256
# ggml type id -> (values per block, bytes per block), for the types this module reads
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K = 2, 3, 6, 7, 8, 12, 13, 14
F32, F16, BF16 = 0, 1, 30
BLOCKS: dict[int, tuple[int, int]] = {
    Q4_0: (32, 18), Q4_1: (32, 20), Q5_0: (32, 22), Q5_1: (32, 24), Q8_0: (32, 34),
    Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210),
}
NAMES = {Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q4_K: "Q4_K", Q5_K: "Q5_K",
         Q6_K: "Q6_K", F32: "F32", F16: "F16", BF16: "BF16"}
PLAIN = {F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16}  # stored as torch dtypes


def row_bytes(n: int, qtype: int) -> int:
    """Bytes of one row of ``n`` values; n must be a whole number of blocks."""
    block, size = BLOCKS[qtype]
    if n % block:
        raise ValueError(f"a row of {n} values is not a whole number of {NAMES[qtype]} blocks of {block}")
    return n // block * size


def _f16(b: torch.Tensor) -> torch.Tensor:
    """(n, 2) bytes -> (n, 1) float32 from little-endian fp16."""
    return b.contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor, group: int) -> torch.Tensor:
    """(n, k) bytes -> (n, k/group, 2, group): low nibbles of each group of bytes, then the high ones."""
    n = qs.shape[0]
    q = qs.reshape(n, -1, 1, group)
    return torch.cat([q & 0x0F, q >> 4], dim=2)


def _bits(b: torch.Tensor, count: int) -> torch.Tensor:
    """(n, k) bytes -> (n, count, k): bit i of every byte for i < count."""
    shifts = torch.arange(count, device=b.device, dtype=torch.uint8).view(1, count, 1)
    return (b.unsqueeze(1) >> shifts) & 1


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b[:, :2]) * b[:, 2:].contiguous().view(torch.int8).float()


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 2:], 16).reshape(b.shape[0], 32).to(torch.int8) - 8
    return _f16(b[:, :2]) * q.float()


def _q4_1(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 4:], 16).reshape(b.shape[0], 32)
    return _f16(b[:, :2]) * q.float() + _f16(b[:, 2:4])


def _fifth_bits(qh: torch.Tensor) -> torch.Tensor:
    """(n, 4) bytes of a little-endian 32-bit word -> (n, 32) bits, value j's bit at position j."""
    return _bits(qh, 8).permute(0, 2, 1).reshape(qh.shape[0], 32)


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    low = _nibbles(b[:, 6:], 16).reshape(b.shape[0], 32)
    q = (low | (_fifth_bits(b[:, 2:6]) << 4)).to(torch.int8) - 16
    return _f16(b[:, :2]) * q.float()


def _q5_1(b: torch.Tensor) -> torch.Tensor:
    low = _nibbles(b[:, 8:], 16).reshape(b.shape[0], 32)
    q = low | (_fifth_bits(b[:, 4:8]) << 4)
    return _f16(b[:, :2]) * q.float() + _f16(b[:, 2:4])


def _k_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes -> eight 6-bit scales and eight 6-bit mins (sub-blocks 0-3 in the low 6 bits of bytes
    0-7, sub-blocks 4-7 split between the nibbles of bytes 8-11 and the top 2 bits of bytes 0-7)."""
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=1)
    return sc, mn


def _k_scaled(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d*sc*q - dmin*m for K-quant (4/5 bit) blocks; q is (n, 8, 32)."""
    n = b.shape[0]
    sc, mn = _k_scales(b[:, 4:16])
    d = (_f16(b[:, :2]) * sc.float()).view(n, 8, 1)
    dm = (_f16(b[:, 2:4]) * mn.float()).view(n, 8, 1)
    return (d * q.float() - dm).reshape(n, QK_K)


def _q4_k(b: torch.Tensor) -> torch.Tensor:
    return _k_scaled(b, _nibbles(b[:, 16:], 32).reshape(b.shape[0], 8, 32))


def _q5_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    low = _nibbles(b[:, 48:], 32).reshape(n, 8, 32)
    high = _bits(b[:, 16:48], 8)  # (n, 8 sub-blocks, 32 values)
    return _k_scaled(b, low | (high << 4))


def _q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql = b[:, :128].reshape(n, 2, 1, 64)
    low = torch.cat([ql & 0x0F, ql >> 4], dim=2).reshape(n, 8, 32)
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    shifts = torch.tensor([0, 2, 4, 6], device=b.device, dtype=torch.uint8).view(1, 1, 4, 1)
    high = ((qh >> shifts) & 0x03).reshape(n, 8, 32)
    q = ((low | (high << 4)).to(torch.int8) - 32).reshape(n, 16, 16)
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    d = (_f16(b[:, 208:210]) * scales).view(n, 16, 1)
    return (d * q.float()).reshape(n, QK_K)


KERNELS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    Q8_0: _q8_0, Q4_0: _q4_0, Q4_1: _q4_1, Q5_0: _q5_0, Q5_1: _q5_1, Q4_K: _q4_k, Q5_K: _q5_k, Q6_K: _q6_k,
}


def dequantize(raw: torch.Tensor, qtype: int, shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 blocks (any leading shape, rows of whole blocks) -> float32 tensor of ``shape``."""
    _block, size = BLOCKS[qtype]
    blocks = raw.reshape(-1, size)
    return KERNELS[qtype](blocks).reshape(shape)
