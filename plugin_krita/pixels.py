"""Byte-level pixel helpers shared by the Krita glue; pure Python (Krita's Python has no numpy).

Krita hands out RGBA pixels in its native order, B,G,R,A (non-premultiplied, one uint8 or one
uint16 per channel in host order, which is little-endian on every platform Krita ships for); the daemon speaks R,G,B,A. Swapping R and B is the same
operation both ways. Extended slices on bytearrays run in C, so a 4k layer swaps in ~0.1 s.
"""

from __future__ import annotations


def swap_red_blue(data: bytes, bit_depth: int) -> bytes:
    """BGRA <-> RGBA for interleaved 4-channel pixels of 8 or 16 bits per channel."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, not {bit_depth}")
    size = 4 if bit_depth == 8 else 8
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte pixels")
    out = bytearray(data)
    unit = bit_depth // 8
    for byte in range(unit):
        # channel 0 and channel 2 trade places, byte by byte within each channel
        out[byte::size] = data[2 * unit + byte::size]
        out[2 * unit + byte::size] = data[byte::size]
    return bytes(out)


def is_blank_mask(mask: bytes) -> bool:
    """True when no pixel is selected at all (every byte is 0)."""
    return not mask.strip(b"\x00")


def split_alpha(data: bytes, bit_depth: int) -> tuple[bytes, bytes]:
    """4-channel pixels (alpha last) -> (the same pixels made opaque, white pixels with their alpha).

    The second is what Dermis puts under a result as its editable coverage (see layers.py)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, not {bit_depth}")
    size = 4 if bit_depth == 8 else 8
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte pixels")
    opaque, white = bytearray(data), bytearray(b"\xff" * len(data))
    for byte in range(size - bit_depth // 8, size):  # the alpha channel's byte(s)
        opaque[byte::size] = b"\xff" * (len(data) // size)
        white[byte::size] = data[byte::size]
    return bytes(opaque), bytes(white)
