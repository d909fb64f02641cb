"""Putting a run's results into the image: one layer, or one layer group, in one undo step.

A run is one job per part of the selection (islands or faces) and per seed (variations). One result
becomes one layer, as before; several become a group named after the run ('Dermis (lite, 7)', or
'Dermis (lite, seeds 7, 8)' for variations) with one layer per part and seed, where only the first
seed's layers are visible. The output (normal pixels or the detail layer in Grain Merge) and the
strength (opacity) are set on what is inserted at the top: the layer, or the group, whose children
stay Normal at 100 %, as in Krita. The source layer is only read; when it was deleted while the
daemon worked, the result goes on top of the image and a note says so (as the Krita plug-in does).
When the image itself was closed meanwhile, the result is not dropped: it goes into a new image
like the closed one (size, mode, precision, colour profile), over a layer holding the part of the
source that was read, and GIMP shows that image, unsaved, as it shows any new image: the user can
copy the result back into a reopened original or save it, and closing it asks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from .image_io import Source, check_result, pixel_format  # noqa: E402


@dataclass
class Piece:
    """One job's result and where it belongs."""

    result: Any  # client JobResult (layer mode); None until its job has ended
    box: tuple[int, int, int, int]  # the part's box in the area that was read (source.crop_x/y based)
    label: str  # "island 1 of 2", "face", "" for the only part
    visible: bool  # the first seed's results show, the other variations are inserted hidden


def layer_name(piece: Piece, several_parts: bool) -> str:
    name = piece.result.layer_name
    return f"{name} {piece.label}" if several_parts and piece.label else name


def group_name(pieces: list[Piece]) -> str:
    """'Dermis (lite, 7)' for one seed, 'Dermis (lite, seeds 7, 8)' for variations."""
    seeds = list(dict.fromkeys(p.result.seed for p in pieces))
    first = pieces[0].result.layer_name
    if len(seeds) == 1:
        return first
    head = first.rsplit(",", 1)[0]  # "Dermis (lite" or "Dermis detail (lite"
    return f"{head}, seeds {', '.join(str(s) for s in seeds)})"


def insert(image: Gimp.Image, source_layer: Gimp.Layer, source: Source, pieces: list[Piece], *,
           scale: float, detail: bool, strength: int, closed: bool = False) -> tuple[Gimp.Layer, list[str]]:
    """Insert ``pieces`` directly above ``source_layer`` (see the module's doc); returns the top
    item (layer or group) and notes for the user. ``closed``: the user closed ``image`` meanwhile
    (GIMP keeps it valid until the plug-in returns, then frees it), so the result goes into a new
    image (module doc), as it does for an image GIMP already reports as gone."""
    for p in pieces:
        check_result(p.result, source)
    notes = []
    reopened = closed or not image.is_valid()
    if reopened:
        image, source_layer = _image_like(source)
    image.undo_group_start()
    try:
        if scale != 1.0:
            image.scale(round(image.get_width() * scale), round(image.get_height() * scale))
        if source_layer.is_valid():
            _, lx, ly = source_layer.get_offsets()  # after scaling: where GIMP put the source layer
            parent, position = source_layer.get_parent(), image.get_item_position(source_layer)
        else:
            notes.append(f"The layer '{source.layer_name}' was deleted meanwhile: the result went on top.")
            lx, ly = round(source.layer_x * scale), round(source.layer_y * scale)
            parent, position = None, 0
        several_parts = len({p.label for p in pieces}) > 1
        if len(pieces) == 1:
            top = _layer(image, pieces[0], layer_name(pieces[0], False))
            image.insert_layer(top, parent, position)
            _place(top, source, pieces[0], lx, ly, scale)
        else:
            top = Gimp.GroupLayer.new(image, group_name(pieces))
            image.insert_layer(top, parent, position)
            for i, p in enumerate(pieces):
                layer = _layer(image, p, layer_name(p, several_parts))
                image.insert_layer(layer, top, i)
                _place(layer, source, p, lx, ly, scale)
                layer.set_visible(p.visible)
        top.set_opacity(float(strength))
        if detail:
            # the detail layer is mid-grey + the detail: Grain Merge adds it to what lies below
            top.set_mode(Gimp.LayerMode.GRAIN_MERGE)
        image.set_selected_layers([top])
    finally:
        image.undo_group_end()
    if reopened:
        shown = _show(image)
        notes.append(f"The image '{source.image_name}' was closed while Dermis worked. The result is in a "
                     f"new image, '{image.get_name()}', over the part of '{source.layer_name}' it was made "
                     f"from{'' if shown else ' (GIMP has no window to show it in: it is open in this session)'}"
                     "; it is not saved yet.")
    Gimp.displays_flush()
    return top, notes


def _image_like(source: Source) -> tuple[Gimp.Image, Gimp.Layer]:
    """A new image like the closed one, holding the source layer as far as it was read (the rest
    transparent) at its old place: the result is inserted over it exactly as into the original."""
    base = Gimp.ImageBaseType.GRAY if source.gray else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new_with_precision(source.image_width, source.image_height, base, source.precision)
    if source.icc_profile:
        image.set_color_profile(Gimp.ColorProfile.new_from_icc_profile(source.icc_profile))
    kind = Gimp.ImageType.GRAYA_IMAGE if source.gray else Gimp.ImageType.RGBA_IMAGE
    layer = Gimp.Layer.new(image, f"{source.layer_name} (what Dermis read)", source.layer_width,
                           source.layer_height, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(source.layer_x, source.layer_y)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(source.crop_x, source.crop_y, source.width, source.height),
            pixel_format(layer, with_alpha=source.channels == 4)[0], source.pixels)
    buf.flush()
    return image, layer


def _show(image: Gimp.Image) -> bool:
    """Open a window on ``image``; False where GIMP runs without a UI (batch, gimp-console)."""
    try:
        return Gimp.Display.new(image) is not None
    except Exception:  # gimp-display-new is an execution error without a UI
        return False


def _layer(image: Gimp.Image, piece: Piece, name: str) -> Gimp.Layer:
    r = piece.result
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    kind = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE
    return Gimp.Layer.new(image, name, r.width, r.height, kind, 100.0, Gimp.LayerMode.NORMAL)


def _place(layer: Gimp.Layer, source: Source, piece: Piece, lx: int, ly: int, scale: float) -> None:
    """Position and pixels of an inserted layer; a selection's coverage becomes its layer mask."""
    r = piece.result
    # exact for whole-number scales; a fractional one can land a pixel off GIMP's own rounding
    layer.set_offsets(lx + round((source.crop_x + piece.box[0]) * scale) + r.offset_x,
                      ly + round((source.crop_y + piece.box[1]) * scale) + r.offset_y)
    fmt, _ = pixel_format(layer, with_alpha=r.channels == 4)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, r.width, r.height), fmt, r.pixels)
    buf.flush()
    if source.mask is not None and r.channels == 4:
        # GIMP moves the alpha into a mask itself (in the mask's own encoding) and makes the
        # layer opaque, so no mask format has to be guessed here
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.ALPHA_TRANSFER))
    layer.update(0, 0, r.width, r.height)
