"""Pixels out of GIMP: reading a layer, its selection and a small picture for face detection.

Reading: the layer's pixels inside the selection's bounding box plus the padding on every
side (clipped to the layer), and the selection over the same rectangle as an 8-bit soft mask.
Writing: layers.py puts the results in; it builds its babl formats with ``pixel_format`` from here.

Colour: pixels travel in the image's own encoding. babl formats are built from the drawable's own
format with ``Babl.format_with_space`` so GIMP converts nothing but the sample type: perceptual
``R'G'B'A u8`` for 8-bit images, ``R'G'B'A u16`` for anything deeper (16/32-bit, half, float; linear
images come out perceptual, as the models expect). Never the linear ``RGBA u8``: it is what makes
results too dark (maorcc/gimp-mcp#43). Formats are never built at import time: the plug-in's query
runs before babl is initialised and would abort in C (maorcc/gimp-mcp PR #55).
Greyscale images go through the same RGB formats (babl expands Y' to R'G'B' and folds the result
back); indexed images are refused with a message, a palette cannot hold the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp  # noqa: E402

from ._client import editors, islands  # noqa: E402

# Pixels of surroundings read around the selection: more than the daemon's context (lite 64,
# supir-srpo 96), so the daemon picks its crop inside what it gets, and only real layer edges count
# as edges (where the feathered mask must not fade). editors.padding_for(context) for a given context.
CONTEXT_PADDING = editors.DEFAULT_PADDING
FACES_MAX_PIXELS = 4 << 20  # what FindFaces takes (daemon/server/faces.py)

_8BIT = {Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL}


class UnsupportedImage(ValueError):
    """The image or layer cannot be refined; the message says what to do instead."""


@dataclass(frozen=True)
class Source:
    """What was read from the layer, and where it came from (drawable coordinates)."""

    pixels: bytes
    width: int
    height: int
    channels: int  # 3 (R'G'B') or 4 (R'G'B'A)
    bit_depth: int  # 8 or 16
    mask: bytes | None  # width*height u8 selection coverage, None = no selection (whole layer)
    crop_x: int  # the rectangle's top-left corner in the layer
    crop_y: int
    pixel_format: str  # babl name the pixels are in (with the image's colour space)
    icc_profile: bytes | None
    # The source layer and its image as they were when read: what the result needs when the layer is
    # deleted (it goes on top, where the layer was) or the image is closed while the daemon works
    # (it goes into a new image like the old one; layers.py).
    layer_name: str = ""
    layer_x: int = 0
    layer_y: int = 0
    layer_width: int = 0
    layer_height: int = 0
    image_name: str = ""
    image_width: int = 0
    image_height: int = 0
    gray: bool = False
    precision: Any = None  # Gimp.Precision of the image

    def part(self, box: tuple[int, int, int, int]) -> bytes:
        """The pixels of ``box`` (x, y, w, h within the area read)."""
        return islands.crop(self.pixels, self.width, box, self.channels * self.bit_depth // 8)


def check_image(image: Gimp.Image, drawables) -> Gimp.Layer:
    """The one layer the procedure works on, or UnsupportedImage saying why not."""
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise UnsupportedImage(
            "Dermis works on RGB and greyscale images. Convert this indexed image first "
            "(Image → Mode → RGB), run Refine skin, and convert back if you need the palette."
        )
    if len(drawables) != 1:
        raise UnsupportedImage(f"Select exactly one layer to refine ({len(drawables)} are selected).")
    drawable = drawables[0]
    if not isinstance(drawable, Gimp.Layer):
        raise UnsupportedImage(
            "Refine skin works on a layer, not on a layer mask or channel: click the layer's "
            "thumbnail in the Layers dialog and run it again."
        )
    return drawable


def pixel_format(drawable: Gimp.Drawable, with_alpha: bool) -> tuple[str, int]:
    """The babl format name the plug-in reads and writes ``drawable`` with, and its bit depth."""
    image = drawable.get_image()
    bits = 8 if image.get_precision() in _8BIT else 16
    base = ("R'G'B'A" if with_alpha else "R'G'B'") + (" u8" if bits == 8 else " u16")
    # keep the image's colour space (primaries): a plain name would mean sRGB and convert
    return Babl.get_name(Babl.format_with_space(base, drawable.get_format())), bits


def read_source(image: Gimp.Image, layer: Gimp.Layer, padding: int = CONTEXT_PADDING) -> Source:
    """The layer inside the selection bounds + padding, with the selection as a soft mask."""
    lw, lh = layer.get_width(), layer.get_height()
    if Gimp.Selection.is_empty(image):
        cx, cy, cw, ch = 0, 0, lw, lh
        mask = None
    else:
        # selection ∩ layer, in layer coordinates
        hit, x, y, w, h = layer.mask_intersect()
        if not hit or w <= 0 or h <= 0:
            raise UnsupportedImage(
                "The selection does not touch the active layer. Select part of this layer, "
                "or Select → None to refine the whole layer."
            )
        cx, cy = max(0, x - padding), max(0, y - padding)
        cw, ch = min(lw, x + w + padding) - cx, min(lh, y + h + padding) - cy
        _, ox, oy = layer.get_offsets()
        # The selection is a linear coverage channel: "Y u8" reads it as is ("Y' u8" would bend
        # a feathered edge). Outside the canvas there is no selection: abyss NONE = 0.
        sel = image.get_selection().get_buffer()
        mask = bytes(sel.get(Gegl.Rectangle.new(ox + cx, oy + cy, cw, ch), 1.0, "Y u8",
                             Gegl.AbyssPolicy.NONE))
    has_alpha = layer.has_alpha()
    fmt, bits = pixel_format(layer, has_alpha)
    pixels = bytes(layer.get_buffer().get(Gegl.Rectangle.new(cx, cy, cw, ch), 1.0, fmt,
                                          Gegl.AbyssPolicy.CLAMP))
    profile = image.get_effective_color_profile()
    icc = bytes(profile.get_icc_profile()) if profile is not None else None
    _, lx, ly = layer.get_offsets()
    return Source(pixels=pixels, width=cw, height=ch, channels=4 if has_alpha else 3, bit_depth=bits,
                  mask=mask, crop_x=cx, crop_y=cy, pixel_format=fmt, icc_profile=icc or None,
                  layer_name=layer.get_name(), layer_x=lx, layer_y=ly, layer_width=lw, layer_height=lh,
                  image_name=image.get_name(), image_width=image.get_width(),
                  image_height=image.get_height(), gray=image.get_base_type() == Gimp.ImageBaseType.GRAY,
                  precision=image.get_precision())


def face_picture(layer: Gimp.Layer, source: Source) -> tuple[bytes, int, int, float]:
    """The area that was read as 8-bit R'G'B', shrunk to what FindFaces takes: (pixels, w, h,
    factor), where a box found in it times ``factor`` is in the area's pixels."""
    factor = max(1.0, (source.width * source.height / FACES_MAX_PIXELS) ** 0.5)
    w, h = max(1, int(source.width / factor)), max(1, int(source.height / factor))
    zoom = w / source.width
    x, y = round(source.crop_x * zoom), round(source.crop_y * zoom)
    fmt = Babl.get_name(Babl.format_with_space("R'G'B' u8", layer.get_format()))
    data = bytes(layer.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), zoom, fmt, Gegl.AbyssPolicy.CLAMP))
    return data, w, h, source.width / w


def check_result(result, source: Source) -> None:
    """Refuse a result that does not fit what was sent, before anything touches the image."""
    expected = result.width * result.height * result.channels * (result.bit_depth // 8)
    if result.channels not in (3, 4) or result.bit_depth != source.bit_depth or len(result.pixels) != expected:
        raise ValueError(
            f"the daemon returned {result.width}x{result.height}, {result.channels} channels, "
            f"{result.bit_depth}-bit, {len(result.pixels)} bytes for a {source.bit_depth}-bit request; "
            "is the daemon the same version as the plug-in?"
        )
