"""Colour conversion with Krita's own engine, a strip at a time, on Krita's UI thread.

Krita's Python API converts pixels only through a document or a node (``setColorSpace``), only on
the UI thread, and the call blocks until Krita's threads are done: a 4096x4096 16-bit image in one
throw-away document froze Krita for seconds. So the pixels go through one throw-away document a
strip of ``STRIP_BYTES`` at a time, each strip in a new detached layer of it (~20 ms for 1 MiB; a
document per strip costs far more in Krita's window, which hears of every document opened and
closed). Each strip is one step of a generator the caller resumes from its timer; the UI runs
between strips. The conversion is Krita's (littlecms, Krita's intent and flags) and converts each
pixel on its own, so strips give what one conversion of the whole image gives. The user's document
is never touched (a conversion there would add steps to its undo history).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from krita import Krita

from . import uitime

Space = tuple[str, str, str]  # (colour model, depth, profile) as Krita names them
STRIP_BYTES = 1 << 20  # per strip, input or output, whichever is larger: ~20-40 ms of Krita's work
_CHANNELS = {"GRAYA": 2, "CMYKA": 5}  # the others Krita has are 4 (RGBA, LABA, XYZA, YCbCrA)
_DEPTH_BYTES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}


class ConversionError(Exception):
    """Krita cannot make or convert the throw-away image (document.DocumentError wraps it)."""


class Converter:
    """A throw-away document in ``src`` that converts strips of pixels to ``dst``; close it after."""

    def __init__(self, src: Space, dst: Space, w: int) -> None:
        self.src, self.dst = src, dst
        self.doc: Any = Krita.instance().createDocument(w, 1, "Dermis colour conversion", *src, 72.0)
        if self.doc is None:
            raise ConversionError(f"Krita cannot create a {'/'.join(src)} image to convert the pixels.")

    def rows_per_strip(self, w: int) -> int:
        widest = max(pixel_bytes(self.src), pixel_bytes(self.dst))
        return max(1, STRIP_BYTES // max(1, w * widest))

    def strip(self, data: bytes, w: int, h: int) -> bytes:
        """``data`` (``w`` x ``h`` pixels in ``src``) in ``dst``: one blocking call, keep it small."""
        with uitime.timed("convert strip"):
            layer = self.doc.createNode("strip", "paintlayer")
            layer.setPixelData(data, 0, 0, w, h)  # Krita 5.1 says nothing back: the check below tells
            layer.setColorSpace(*self.dst)
            out = bytes(layer.pixelData(0, 0, w, h))
        if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != self.dst or not out:
            raise ConversionError(f"Krita cannot convert {'/'.join(self.src)} to {'/'.join(self.dst)}.")
        return out

    def close(self) -> None:
        self.doc.setModified(False)
        self.doc.close()


def pixel_bytes(space: Space) -> int:
    return _CHANNELS.get(space[0], 4) * _DEPTH_BYTES.get(space[1], 4)


def convert_steps(data: bytes | bytearray | memoryview, w: int, h: int, src: Space, dst: Space,
                  conv: Converter | None = None) -> Generator[None, None, bytearray]:
    """Krita-native pixel bytes ``w`` x ``h`` in ``src`` -> the same in ``dst``, a strip per step;
    the generator's value is the converted pixels. ``conv``: a converter to use (and leave open),
    for a caller converting many pieces; by default one is made and closed here."""
    view = memoryview(data).cast("B")
    in_row = len(view) // max(1, h)
    out = bytearray()  # grows a strip at a time: bytearray(n) would zero all of it in one call
    out_row = pixel_bytes(dst) * w
    own = conv is None
    conv = conv or Converter(src, dst, w)
    try:
        rows = conv.rows_per_strip(w)
        for top in range(0, h, rows):
            n = min(rows, h - top)
            piece = conv.strip(bytes(view[top * in_row:(top + n) * in_row]), w, n)
            if len(piece) != n * out_row:
                raise ConversionError(f"Krita gave {len(piece)} bytes for {w}x{n} {'/'.join(dst)} pixels.")
            out += piece
            if top + n < h:
                yield
    finally:
        if own:
            conv.close()
    return out
