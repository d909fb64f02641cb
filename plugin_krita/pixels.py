"""Byte-level pixel helpers shared by the Krita glue; pure Python (Krita's Python has no numpy).

Krita hands out RGBA pixels in its native order, B,G,R,A (non-premultiplied, one uint8 or one
uint16 per channel in host order, which is little-endian on every platform Krita ships for); the daemon speaks R,G,B,A. Swapping R and B is the same
operation both ways. Extended slices on bytearrays run in C, so a 4k layer swaps in ~0.1 s.

These run on worker threads next to Krita's UI thread, and Python lets one thread run at a time: a
single C call over a whole 4096x4096 16-bit image (``bytes(big)``, a join, a slice, even
``bytearray(n)``, which zeroes all of it: 74 ms for 128 MiB) holds that lock for 0.07-0.2 s,
freezing Krita as long. So every loop works in 1 MiB steps, results grow a step at a time
(``+=``: growing a large bytearray moves no bytes, the C library remaps its pages) and stay the
``bytearray`` they were built in (any bytes-like object will do for the thin client and for
Krita): no final copy.
"""

from __future__ import annotations

CHUNK = 1 << 20  # bytes per step: a worker thread doing this lets Krita's UI thread run in between


def swap_red_blue(data: bytes | bytearray | memoryview, bit_depth: int) -> bytearray:
    """BGRA <-> RGBA for interleaved 4-channel pixels of 8 or 16 bits per channel.

    Works in 1 MiB steps: each slice operation holds Python's lock for ~10 ms, so on a worker thread
    a 4096x4096 16-bit image never stops Krita's UI thread for long."""
    size = _pixel_size(data, bit_depth)
    out = bytearray()
    unit = bit_depth // 8
    step = CHUNK - CHUNK % size
    for start in range(0, len(data), step):
        end = min(len(data), start + step)
        out += data[start:end]
        for byte in range(unit):
            # channel 0 and channel 2 trade places, byte by byte within each channel
            out[start + byte:end:size] = data[start + 2 * unit + byte:end:size]
            out[start + 2 * unit + byte:end:size] = data[start + byte:end:size]
    return out


def _pixel_size(data: bytes | bytearray | memoryview, bit_depth: int) -> int:
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, not {bit_depth}")
    size = 4 if bit_depth == 8 else 8
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte pixels")
    return size


def is_blank_mask(mask: bytes) -> bool:
    """True when no pixel is selected at all (every byte is 0)."""
    return not mask.strip(b"\x00")


def split_alpha(data: bytes | bytearray | memoryview, bit_depth: int) -> tuple[bytearray, bytearray]:
    """4-channel pixels (alpha last) -> (the same pixels made opaque, their alpha as 1 byte a pixel).

    The second fills the result's transparency mask (see layers.py), which Krita keeps at 8 bits
    whatever the document's depth: a 16-bit alpha gives its high byte, within 1/255 of a/257. In
    1 MiB steps, like ``swap_red_blue``: the outputs grow a step at a time (a whole-size bytearray
    is zeroed in one call that holds Python's lock) and are returned without a final copy."""
    size = _pixel_size(data, bit_depth)
    opaque, alpha = bytearray(), bytearray()
    step = CHUNK - CHUNK % size
    full = b"\xff" * (step // size)
    for start in range(0, len(data), step):
        end = min(len(data), start + step)
        n = (end - start) // size
        opaque += data[start:end]
        for byte in range(size - bit_depth // 8, size):  # the alpha channel's byte(s)
            opaque[start + byte:end:size] = full[:n]
        alpha += data[start + size - 1:end:size]  # alpha's (high) byte
    return opaque, alpha
