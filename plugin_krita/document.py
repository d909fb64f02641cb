"""Everything that touches Krita's API: read the pixels to refine, put the result back.

Call these only on Krita's UI thread. Rules they keep:
- The user's layers are never modified. Colour conversions happen in a temporary, invisible
  document (converting a node in the user's document would add "Convert Layer Color Space" steps
  to its undo history, even on a detached copy).
- Pixels go to the daemon as R,G,B,A in 8 or 16 bits with the sRGB transfer curve, which is what
  the models expect. RGBA U8/U16 layers with an sRGB profile go as they are (16-bit stays 16-bit);
  anything else (linear or wide-gamut profiles, float depths, grey, CMYK, Lab) is converted on a
  copy to 16-bit sRGB, and the result is converted back to the document's colour space (colours
  outside sRGB's gamut are clipped on the way). A layer without a profile is taken to be sRGB.
- The result is one new paint layer directly above the source layer, created and filled before it
  is added, so adding it is a single undo step. Where it goes was recorded when the job started
  (``Target``): later edits to the document do not misplace it, and a closed document or a deleted
  source layer is reported instead of guessed around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from krita import Krita
from PyQt5.QtGui import QIcon

from . import pixels

SRGB = "sRGB-elle-V2-srgbtrc.icc"  # Krita's bundled sRGB profile (sRGB primaries and curve)
_SRGB_NAMES = {"srgb-elle-v2-srgbtrc.icc", "srgb-elle-v4-srgbtrc.icc", "srgb built-in",
               "srgb iec61966-2.1", "srgb iec61966-2-1", ""}
_DEPTH_BITS = {"U8": 8, "U16": 16}
_MASK_TYPES = ("transparencymask", "filtermask", "selectionmask", "colorizemask", "transformmask")

Space = tuple[str, str, str]  # (colour model, depth, profile) as Krita names them


class DocumentError(Exception):
    """A problem the user can fix (no image open, empty selection…); the docker shows it as is."""


@dataclass
class Target:
    """Where a result goes, decided when the job starts."""

    document: Any  # krita.Document
    node_id: Any  # QUuid of the source layer; None for the merged image (result goes on top)
    node_name: str
    x: int  # canvas position of the pixels that were sent
    y: int
    width: int
    height: int
    canvas: tuple[int, int]  # document size when the job started
    wire_space: Space  # colour space of the pixels sent
    description: str  # "selection (96x80) on 'Background'", for the docker


@dataclass
class Placed:
    """Where a result went."""

    name: str  # the new layer's (or document's) name
    document: Any  # the document holding it (a new one for scale > 1)
    notes: list[str] = field(default_factory=list)  # what the user should know (source deleted…)


@dataclass
class Source:
    target: Target
    pixels: bytes  # R,G,B,A interleaved, little-endian uint16 when bit_depth is 16
    width: int
    height: int
    bit_depth: int
    mask: bytes | None  # one byte per pixel (0..255), same size; None = no selection
    notes: list[str] = field(default_factory=list)


# -- application ------------------------------------------------------------------------------
def active_document() -> Any:
    return Krita.instance().activeDocument()


def active_node(doc: Any) -> Any:
    return doc.activeNode() if doc is not None else None


def read_setting(key: str, default: str = "") -> str:
    return Krita.instance().readSetting("dermis", key, default)


def write_setting(key: str, value: str) -> None:
    Krita.instance().writeSetting("dermis", key, value)


def notify(text: str, ms: int = 5000) -> None:
    """A floating message on the canvas, so the outcome shows even when the docker is hidden."""
    window = Krita.instance().activeWindow()
    view = window.activeView() if window is not None else None
    if view is not None:
        view.showFloatingMessage(text, QIcon(), ms, 1)  # 1 = medium priority


def is_open(doc: Any) -> bool:
    return any(d == doc for d in Krita.instance().documents())


# -- reading ----------------------------------------------------------------------------------
def read_source(doc: Any, node: Any, *, whole_image: bool = False, padding: int = 128,
                full_canvas: bool = False) -> Source:
    """The pixels a job works on, from the UI thread.

    ``node``: the layer to refine (the active one; None only with ``whole_image``).
    ``whole_image``: the merged image of the whole canvas instead of the active layer and selection.
    ``full_canvas``: send the whole canvas (with the selection as mask) rather than the selection's
    box plus ``padding``; used when the result becomes a new, larger document.
    """
    if doc is None:
        raise DocumentError("Open an image first.")
    cw, ch = doc.width(), doc.height()
    if whole_image:
        node = None
    else:
        if node is None:
            raise DocumentError("Select the layer to refine in the Layers docker.")
        if node.type() in _MASK_TYPES:
            raise DocumentError(f"'{node.name()}' is a mask, not a layer: select a layer to refine.")

    # 1. The area: selection box (+ context), else the layer's bounds, clipped to the canvas
    sel = None if whole_image else doc.selection()
    mask = None
    if sel is not None:
        region = _clip((sel.x(), sel.y(), sel.width(), sel.height()), cw, ch)
        if region is None:
            raise DocumentError("The selection is empty or lies outside the canvas: nothing to refine. "
                                "Deselect (Ctrl+Shift+A) to refine the whole layer.")
        region = _mask_box(bytes(sel.pixelData(*region)), region)
        if region is None:
            raise DocumentError("The selection is empty: nothing to refine. "
                                "Deselect (Ctrl+Shift+A) to refine the whole layer.")
        x, y, w, h = (0, 0, cw, ch) if full_canvas else _pad(region, padding, cw, ch)
        mask = bytes(sel.pixelData(x, y, w, h))
        what = f"selection ({region[2]}x{region[3]}) on '{node.name()}'"
    else:
        box = (0, 0, cw, ch) if whole_image or full_canvas else _rect(node.bounds())
        clipped = _clip(box, cw, ch)
        if clipped is None:
            raise DocumentError(f"The layer '{node.name()}' has no pixels on the canvas.")
        x, y, w, h = clipped
        what = f"whole image ({w}x{h})" if whole_image else f"layer '{node.name()}' ({w}x{h})"
    source_name = "merged image" if whole_image else node.name()

    # 2. The pixels, in the node's own colour space
    if whole_image:
        doc.waitForDone()  # the projection must include the latest strokes
        raw, space = bytes(doc.pixelData(x, y, w, h)), _space(doc)
    else:
        raw, space = bytes(node.projectionPixelData(x, y, w, h)), _space(node)
    if len(raw) == 0:
        raise DocumentError(f"Krita returned no pixels for '{source_name}'.")

    # 3. Into the wire format (sRGB RGBA, 8 or 16 bit), converting a copy when needed
    notes = []
    wire = wire_space(space)
    if wire != space:
        raw = convert(raw, w, h, space, wire)
        notes.append(f"converted from {'/'.join(space)} to sRGB {wire[1]} for the daemon")
    bits = _DEPTH_BITS[wire[1]]
    target = Target(
        document=doc,
        node_id=None if whole_image else node.uniqueId(),
        node_name=source_name,
        x=x, y=y, width=w, height=h,
        canvas=(cw, ch),
        wire_space=wire,
        description=what,
    )
    return Source(target, pixels.swap_red_blue(raw, bits), w, h, bits, mask, notes)


def wire_space(space: Space) -> Space:
    """The colour space pixels in ``space`` travel in."""
    model, depth, profile = space
    if model == "RGBA" and depth in _DEPTH_BITS and is_srgb(profile):
        return space
    # 16 bits even from U8: two conversions at 8 bits would cost a few levels of precision
    return ("RGBA", "U16", SRGB)


def is_srgb(profile: str) -> bool:
    """sRGB primaries with the sRGB curve (not 'ClayRGB-…-srgbtrc', not linear 'g10')."""
    low = profile.strip().lower()
    return low in _SRGB_NAMES or (low.startswith("srgb") and "srgbtrc" in low)


def convert(data: bytes, w: int, h: int, src: Space, dst: Space) -> bytes:
    """Convert Krita-native pixel bytes between colour spaces in a throw-away document."""
    app = Krita.instance()
    tmp = app.createDocument(w, h, "Dermis colour conversion", src[0], src[1], src[2], 72.0)
    if tmp is None:
        raise DocumentError(f"Krita cannot create a {'/'.join(src)} image to convert the pixels.")
    try:
        layer = tmp.rootNode().childNodes()[0]
        layer.setPixelData(data, 0, 0, w, h)
        if not tmp.setColorSpace(*dst):
            raise DocumentError(f"Krita cannot convert {'/'.join(src)} to {'/'.join(dst)}.")
        tmp.waitForDone()
        return bytes(layer.pixelData(0, 0, w, h))
    finally:
        tmp.setModified(False)
        tmp.close()


# -- writing ----------------------------------------------------------------------------------
def insert_result(target: Target, result: Any) -> Placed:
    """Add the daemon's layer-mode result above the source layer; returns (layer name, notes)."""
    doc = target.document
    if not is_open(doc):
        raise DocumentError(f"The image this job came from was closed; the result "
                            f"'{result.layer_name}' was not inserted. Run it again on the open image.")
    _check_result(target, result, want_canvas=(target.width, target.height))
    x, y = target.x + result.offset_x, target.y + result.offset_y
    data = _to_document_space(doc, target.wire_space, result)
    notes = []
    if (doc.width(), doc.height()) != target.canvas:
        notes.append("The canvas was resized while Dermis worked: the layer sits where the "
                     "selection was when the job started.")

    node = doc.createNode(result.layer_name, "paintlayer")
    node.setPixelData(data, x, y, result.width, result.height)
    source = find_node(doc.rootNode(), target.node_id) if target.node_id is not None else None
    if source is not None:
        source.parentNode().addChildNode(node, source)  # one undo step: "Add layer"
    else:
        if target.node_id is not None:
            notes.append(f"The layer '{target.node_name}' was deleted meanwhile: the result went on top.")
        root = doc.rootNode()
        layers = [n for n in root.childNodes() if n.type() not in _MASK_TYPES]
        root.addChildNode(node, layers[-1] if layers else None)
    doc.refreshProjection()
    return Placed(node.name(), doc, notes)


def open_result_document(target: Target, result: Any) -> Placed:
    """A larger (scale > 1) full-image result opens as a new document; the original stays as it is."""
    _check_result(target, result, want_canvas=None)
    app = Krita.instance()
    model, depth, profile = target.wire_space
    doc = app.createDocument(result.width, result.height, result.layer_name, model, depth, profile,
                             _resolution(target.document))
    layer = doc.rootNode().childNodes()[0]
    layer.setName(result.layer_name)
    layer.setPixelData(pixels.swap_red_blue(result.pixels, result.bit_depth), 0, 0,
                       result.width, result.height)
    notes = []
    if is_open(target.document):
        dst = _space(target.document)
        if dst != target.wire_space and doc.setColorSpace(*dst):
            notes.append(f"converted back to {'/'.join(dst)}")
    doc.refreshProjection()
    window = app.activeWindow()
    if window is not None:
        window.addView(doc)  # the view keeps the document open (the caller's reference does too)
    return Placed(result.layer_name, doc, notes)


def find_node(parent: Any, uid: Any) -> Any:
    """The node with this unique id under ``parent`` (depth first), or None."""
    for child in parent.childNodes():
        if child.uniqueId() == uid:
            return child
        found = find_node(child, uid)
        if found is not None:
            return found
    return None


# -- helpers ----------------------------------------------------------------------------------
def _check_result(target: Target, result: Any, want_canvas: tuple[int, int] | None) -> None:
    bits = _DEPTH_BITS[target.wire_space[1]]
    size = result.width * result.height * result.channels * (result.bit_depth // 8)
    if result.channels != 4 or result.bit_depth != bits or len(result.pixels) != size:
        raise DocumentError(
            f"The daemon sent {result.width}x{result.height}x{result.channels} at {result.bit_depth} bit "
            f"({len(result.pixels)} bytes); expected RGBA at {bits} bit. Is the daemon up to date?")
    if want_canvas is not None:
        cw, ch = result.canvas_width, result.canvas_height
        inside = (0 <= result.offset_x and 0 <= result.offset_y and result.offset_x + result.width <= cw
                  and result.offset_y + result.height <= ch)
        if (cw, ch) != want_canvas or not inside:
            raise DocumentError(
                f"The daemon's layer ({result.width}x{result.height} at {result.offset_x},{result.offset_y} "
                f"of {cw}x{ch}) does not fit the {want_canvas[0]}x{want_canvas[1]} area that was sent.")


def _to_document_space(doc: Any, wire: Space, result: Any) -> bytes:
    data = pixels.swap_red_blue(result.pixels, result.bit_depth)
    dst = _space(doc)  # now, not at submit: the user may have converted the image meanwhile
    if dst != wire:
        data = convert(data, result.width, result.height, wire, dst)
    return data


def _space(obj: Any) -> Space:
    return (obj.colorModel(), obj.colorDepth(), obj.colorProfile())


def _resolution(doc: Any) -> float:
    try:
        return float(doc.resolution()) if is_open(doc) else 72.0
    except Exception:
        return 72.0


def _rect(r: Any) -> tuple[int, int, int, int]:
    return (r.x(), r.y(), r.width(), r.height())


def _clip(box: tuple[int, int, int, int], cw: int, ch: int) -> tuple[int, int, int, int] | None:
    x, y, w, h = box
    x0, y0, x1, y1 = max(0, x), max(0, y), min(cw, x + w), min(ch, y + h)
    if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _pad(box: tuple[int, int, int, int], pad: int, cw: int, ch: int) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x - pad), max(0, y - pad)
    return (x0, y0, min(cw, x + w + pad) - x0, min(ch, y + h + pad) - y0)


def _mask_box(mask: bytes, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Shrink ``box`` to the pixels the mask actually selects (a selection's extent can be loose)."""
    x, y, w, h = box
    rows = [mask[i * w:(i + 1) * w] for i in range(h)]
    used = [i for i, r in enumerate(rows) if not pixels.is_blank_mask(r)]
    if not used:
        return None
    left = min(len(rows[i]) - len(rows[i].lstrip(b"\x00")) for i in used)
    right = max(len(rows[i].rstrip(b"\x00")) for i in used)
    return (x + left, y + used[0], right - left, used[-1] - used[0] + 1)
