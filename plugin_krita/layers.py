"""Writing results into Krita: a run's layers (or group), and larger results as a new document.

Call only on Krita's UI thread. What a run inserts:
- one result of a selection: a paint layer "Dermis (preset, seed)" directly above the source layer,
  opaque over the processed rectangle, with a child transparency mask "Selection" holding the
  feathered selection; painting the mask (white to add, black to remove) takes the effect in or out.
  Krita 5.1's scripting API cannot fill a new transparency mask, so the mask is a copy of one from a
  tiny .kra file Dermis writes and opens (template.py). Without a selection, the result keeps its
  own alpha and has no mask;
- several parts (islands, faces) or seeds (variations): one group holding a layer per part (each with
  its own mask), or a sub-group per seed holding the parts; only the first seed is visible;
- the detail layer (content "detail") in Grain Merge mode; the strength is the opacity of what is
  inserted (layer or group).

One undo step: everything is built detached from the document, children and masks attached with
``setChildNodes`` on nodes that have no children yet (Krita does not record it; on a node with
children, 5.1.5's ``setChildNodes`` removes only the first one before appending), the blending mode set through the template (Krita
records a blend-mode change as a step of its own, on the image of the ``Node`` object it is called
on), and only the top node is added (recorded as one "Add Layer").

When the image the job came from was closed meanwhile (before or while the result is inserted),
the result is not dropped: it goes into a new image like the closed one (its size, colour model,
depth, profile and resolution, recorded when the job started), over a bottom layer
"<layer> (what Dermis read)" holding the pixels that were sent (the jobs keep them anyway; a run
resumed after a restart of Krita has not got them, and then that layer is left out), built by the
same code as above. Krita shows it in a new view when it has a window; it is not saved, and
Krita asks before closing it. The message names both images.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from krita import Krita

from . import document, pixels, prepare, template
from .document import DocumentError, Target

GRAIN_MERGE = "grain_merge"  # Krita's id of the Grain Merge blending mode
MASK_NAME = "Selection"  # the result's transparency mask: the feathered selection, to paint


@dataclass
class Placed:
    """Where a result went."""

    name: str  # the new layer's (group's, document's) name
    document: Any  # the document holding it (a new one for scale > 1)
    notes: list[str] = field(default_factory=list)  # what the user should know (source deleted…)


@dataclass
class Item:
    """One result to insert: where its area was read, its part of it, and how to show it."""

    box: tuple[int, int, int, int]  # the part's box in the run's area
    result: Any  # dc.JobResult (layer mode)
    name: str  # layer name
    has_mask: bool  # a selection came with it: its alpha becomes a transparency mask
    visible: bool = True
    seed: int = 0
    data: tuple[bytes, bytes | None] | None = None  # prepare.layer_bytes, done off the UI thread
    sent: bytes | bytearray | None = None  # the part's pixels as sent (R,G,B,A); None after a restart

Steps = Generator[None, None, Any]  # UI-thread work in steps: the caller resumes it from a timer
STRIP_BYTES = 8 << 20  # pixels written per step into a detached layer


def insert(target: Target, items: list[Item], *, group: str, detail: bool, strength: int) -> Steps:
    """Insert a run's results above the source layer in one undo step (see the module's doc); the
    pixels go into the still detached layers a strip per step, so the UI keeps running. When the
    image was closed, the result goes into a new one (module doc). Returns (as the generator's
    value) a Placed."""
    doc = target.document
    if not document.is_open(doc):
        return (yield from _into_new_document(target, items, group=group, detail=detail, strength=strength))
    try:
        top, name = yield from _build(doc, target, items, group=group, detail=detail, strength=strength)
    except Exception:
        if document.is_open(doc):
            raise
        top = None  # closed between two steps: Krita's calls on it failed
    if top is None or not document.is_open(doc):
        return (yield from _into_new_document(target, items, group=group, detail=detail, strength=strength))
    notes = []
    if (doc.width(), doc.height()) != target.canvas:
        notes.append("The canvas was resized while Dermis worked: the result sits where the "
                     "selection was when the job started.")
    source = find_node(doc.rootNode(), target.node_id) if target.node_id is not None else None
    if source is not None:
        source.parentNode().addChildNode(top, source)  # the one visible undo step: "Add Layer"
    else:
        if target.node_id is not None:
            notes.append(f"The layer '{target.node_name}' was deleted meanwhile: the result went on top.")
        root = doc.rootNode()
        tops = [n for n in root.childNodes() if n.type() not in document.MASK_TYPES]
        root.addChildNode(top, tops[-1] if tops else None)
    # no refreshProjection(): it waits for the whole image to be composited again (over a second at
    # 4096² on the UI thread); adding the node already updates its area, in Krita's own threads
    return Placed(name, doc, notes)


def _build(doc: Any, target: Target, items: list[Item], *, group: str, detail: bool, strength: int) -> Steps:
    """The run's layer (or group) for ``doc``, detached, its opacity and blending mode set; the
    generator's value is (the node, its name), or (None, "") when ``doc`` was closed meanwhile."""
    with template.Template() as tpl:
        layers = []
        for item in items:
            if not document.is_open(doc):
                return None, ""
            layers.append((yield from _layer(doc, target, item, tpl)))
        if not document.is_open(doc):
            return None, ""
        if len(layers) == 1:
            top, name = layers[0], items[0].name
        else:
            top, name = _group(doc, group, items, layers), group
        top.setOpacity(round(strength * 255 / 100))
        if detail:
            tpl.set_blending_mode(top, GRAIN_MERGE)  # not recorded in this document's history
    return top, name


def _into_new_document(target: Target, items: list[Item], *, group: str, detail: bool, strength: int) -> Steps:
    """The image was closed: a new one like it, the pixels that were sent at the bottom, the result
    above them (module doc); the generator's value is a Placed."""
    app = Krita.instance()
    (w, h), space = target.canvas, target.space
    title = f"{target.document_name} (Dermis)"
    doc = app.createDocument(w, h, title, *space, target.resolution)
    if doc is None:
        raise DocumentError(
            f"The image '{target.document_name}' was closed while Dermis worked, and Krita could not make "
            f"a new {w}x{h} {'/'.join(space)} image for the result ({', '.join(i.name for i in items)}). "
            "Run it again on the open image.")
    root = doc.rootNode()
    blank = root.childNodes()  # createDocument's empty layer: what follows takes its place
    sent = {i.box: i.sent for i in items if i.sent is not None}  # one copy a part, whatever the seeds
    below = None
    if sent:
        below = doc.createNode(f"{target.node_name} (what Dermis read)", "paintlayer")
        yield from _write_sent(below, target, sent, document.space_of(doc))  # detached: no redraw
    top, name = yield from _build(doc, target, items, group=group, detail=detail, strength=strength)
    if top is None:
        raise DocumentError(f"The new image '{title}' was closed before the result was in it; run it again.")
    anchor = below if below is not None else (blank[-1] if blank else None)
    if below is not None:
        root.addChildNode(below, blank[-1] if blank else None)
    root.addChildNode(top, anchor)
    for node in blank:
        node.remove()
    doc.setModified(True)  # not saved: Krita asks before closing it
    window = app.activeWindow()
    if window is not None:
        window.addView(doc)  # the view keeps the document open (the caller's reference does too)
    under = (f"over the part of '{target.node_name}' it was made from" if sent else
             f"without the pixels of '{target.node_name}' it was made from (a run resumed after Krita "
             "restarted does not keep them)")
    where = "" if window is not None else " (Krita has no window to show it in: it is open in this session)"
    note = (f"The image '{target.document_name}' was closed while Dermis worked. The result is in a new "
            f"image, '{title}', {under}{where}; it is not saved yet.")
    return Placed(name, doc, [note])


def _write_sent(node: Any, target: Target, sent: dict[tuple[int, int, int, int], Any], dst: document.Space) -> Steps:
    """The pixels that were sent (R,G,B,A in the wire space), each part at its place in ``node``, in
    Krita's order and ``dst``: a strip per step, swapped (and converted) on the way."""
    wire = target.wire_space
    bits = document.DEPTH_BITS[wire[1]]
    for (bx, by, w, h), data in sent.items():
        conv = None if dst == wire else document.converter(wire, dst, w)
        try:
            row = len(data) // max(1, h)
            rows = max(1, STRIP_BYTES // max(1, row))
            for top in range(0, h, rows):
                n = min(rows, h - top)
                strip = pixels.swap_red_blue(data[top * row:(top + n) * row], bits)  # to Krita's B,G,R,A
                if conv is not None:
                    yield
                    strip = yield from document.converted(strip, w, n, wire, dst, conv)
                node.setPixelData(strip, target.x + bx, target.y + by + top, w, n)
                yield
        finally:
            if conv is not None:
                conv.close()


def _layer(doc: Any, target: Target, item: Item, tpl: template.Template) -> Steps:
    """The result as a paint layer; with a selection, opaque, its coverage in a child transparency mask."""
    r = item.result
    _check_result(target, r, want_canvas=(item.box[2], item.box[3]))
    x, y = target.x + item.box[0] + r.offset_x, target.y + item.box[1] + r.offset_y
    node = doc.createNode(item.name, "paintlayer")
    layer, coverage = item.data or prepare.layer_bytes(r, item.has_mask)
    layer = yield from _to_document_space(doc, target.wire_space, r, layer)
    yield from _write(node, layer, x, y, r.width, r.height)
    if coverage is not None:
        mask = tpl.mask(MASK_NAME)
        yield from _write(mask, coverage, x, y, r.width, r.height)  # 1 byte a pixel at any depth
        node.setChildNodes([mask])  # attached without an undo step (nothing is in the image yet)
    node.setVisible(item.visible)
    return node


def _write(node: Any, data: bytes, x: int, y: int, w: int, h: int) -> Steps:
    """setPixelData a strip per step (the node is detached: no undo step, no redraw)."""
    row = len(data) // max(1, h)
    rows = max(1, STRIP_BYTES // max(1, row))
    for top in range(0, h, rows):
        n = min(rows, h - top)
        node.setPixelData(data[top * row:(top + n) * row], x, y + top, w, n)
        yield


def _group(doc: Any, name: str, items: list[Item], layers: list[Any]) -> Any:
    """One group; with several seeds and several parts, a sub-group per seed."""
    top = doc.createGroupLayer(name)
    seeds = list(dict.fromkeys(i.seed for i in items))
    parts = len(items) // max(1, len(seeds))
    if len(seeds) > 1 and parts > 1:
        children = []
        for k, seed in enumerate(seeds):
            members = [layer for layer, item in zip(layers, items, strict=True) if item.seed == seed]
            for layer in members:
                layer.setVisible(True)
            sub = doc.createGroupLayer(next(i.result.layer_name for i in items if i.seed == seed))
            sub.setChildNodes(list(reversed(members)))  # first part on top
            sub.setVisible(k == 0)
            children.append(sub)
    else:
        children = layers
    top.setChildNodes(list(reversed(children)))  # Krita lists children bottom first: the first on top
    return top


def open_result_document(target: Target, result: Any, data: Any = None) -> Steps:
    """A larger (scale > 1) full-image result opens as a new document; the original stays as it is.
    ``data``: the result in Krita's byte order (prepare.layer_bytes, off the UI thread), written a
    strip per step; the generator's value is a Placed."""
    _check_result(target, result, want_canvas=None)
    app = Krita.instance()
    model, depth, profile = target.wire_space
    doc = app.createDocument(result.width, result.height, result.layer_name, model, depth, profile,
                             target.resolution)
    layer = doc.rootNode().childNodes()[0]
    layer.setName(result.layer_name)
    data = data if data is not None else pixels.swap_red_blue(result.pixels, result.bit_depth)
    yield from _write(layer, data, 0, 0, result.width, result.height)
    notes = []
    if document.is_open(target.document):
        dst = document.space_of(target.document)
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


def _check_result(target: Target, result: Any, want_canvas: tuple[int, int] | None) -> None:
    bits = document.DEPTH_BITS[target.wire_space[1]]
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


def _to_document_space(doc: Any, wire: document.Space, result: Any, data: Any) -> Steps:
    """Krita-ordered pixels of ``result`` in the document's colour space (converted, a strip per
    step, when it differs); the generator's value is the pixels."""
    dst = document.space_of(doc)  # now, not at submit: the user may have converted the image meanwhile
    if dst != wire:
        data = yield from document.converted(data, result.width, result.height, wire, dst)
    return data

