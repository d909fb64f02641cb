"""Reading from Krita: the pixels and the selection to refine, colour conversions, settings, messages.

Writing results back is ``layers.py``; these two are the only modules calling Krita's document API.
Call them only on Krita's UI thread. Rules they keep:
- The user's layers are never modified. Colour conversions happen in a temporary, invisible
  document (converting a node in the user's document would add "Convert Layer Color Space" steps
  to its undo history, even on a detached copy).
- Pixels go to the daemon as R,G,B,A in 8 or 16 bits with the sRGB transfer curve, which is what
  the models expect. RGBA U8/U16 layers with an sRGB profile go as they are (16-bit stays 16-bit);
  anything else (linear or wide-gamut profiles, float depths, grey, CMYK, Lab) is converted on a
  copy, a strip at a time (colour.py), to 16-bit sRGB, and the result is converted back to the
  document's colour space (colours outside sRGB's gamut are clipped on the way). A layer without a profile is taken to be sRGB.
- Where results go is recorded when the run starts (``Target``): later edits to the document do not
  misplace them, a deleted source layer is reported instead of guessed around, and the result of a
  closed document goes into a new one like it (its size, colour space, resolution and name are
  recorded too: a closed ``Document`` answers nothing any more).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from krita import Krita
from PyQt5.QtGui import QIcon

from . import colour, pixels, uitime

SRGB = "sRGB-elle-V2-srgbtrc.icc"  # Krita's bundled sRGB profile (sRGB primaries and curve)
_SRGB_NAMES = {"srgb-elle-v2-srgbtrc.icc", "srgb-elle-v4-srgbtrc.icc", "srgb built-in",
               "srgb iec61966-2.1", "srgb iec61966-2-1", ""}
DEPTH_BITS = {"U8": 8, "U16": 16}
MASK_TYPES = ("transparencymask", "filtermask", "selectionmask", "colorizemask", "transformmask")

Space = colour.Space  # (colour model, depth, profile) as Krita names them


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
    space: Space  # the document's colour space when the job started
    resolution: float  # its pixels per inch
    document_name: str  # how the user knows it: its file's name, else its title


@dataclass
class Source:
    """The area read for a run: every part of the selection, with its padding."""

    target: Target
    pixels: bytes | bytearray  # Krita's B,G,R,A interleaved, little-endian uint16 when bit_depth is 16 (prepare.py swaps)
    width: int
    height: int
    bit_depth: int
    mask: bytes | None  # one byte per pixel (0..255), same size; None = no selection
    notes: list[str] = field(default_factory=list)
    # reads ``pixels`` a strip per step (UI thread): see read_source; None once they are read
    reader: Iterator[None] | None = None

    def face_picture(self, max_side: int = 1024) -> tuple[bytes, int, int, float]:
        """A small 8-bit RGB copy for the daemon's face search: (pixels, width, height, area px per
        picture px)."""
        from PyQt5.QtCore import Qt
        from PyQt5.QtGui import QImage

        data = self.pixels if self.bit_depth == 8 else self.pixels[1::2]  # the high bytes: 8-bit
        img = QImage(data, self.width, self.height, self.width * 4, QImage.Format_ARGB32)  # B,G,R,A bytes
        factor = max(1.0, max(self.width, self.height) / max_side)
        if factor > 1:
            img = img.scaled(max(1, round(self.width / factor)), max(1, round(self.height / factor)),
                             Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
        img = img.convertToFormat(QImage.Format_RGB888)
        w, h, stride = img.width(), img.height(), img.bytesPerLine()
        raw = img.constBits().asstring(stride * h)
        rgb = raw if stride == 3 * w else b"".join(raw[y * stride : y * stride + 3 * w] for y in range(h))
        return rgb, w, h, self.width / w


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
        if node.type() in MASK_TYPES:
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

    # 2. The pixels, in the node's own colour space, are read later, a strip per step (``reader``)
    if whole_image:
        doc.waitForDone()  # the projection must include the latest strokes
        read, space = doc.pixelData, space_of(doc)
    else:
        read, space = node.projectionPixelData, space_of(node)
    wire = wire_space(space)
    bits = DEPTH_BITS[wire[1]]
    target = Target(
        document=doc,
        node_id=None if whole_image else node.uniqueId(),
        node_name=source_name,
        x=x, y=y, width=w, height=h,
        canvas=(cw, ch),
        wire_space=wire,
        description=what,
        space=space_of(doc),
        resolution=resolution(doc),
        document_name=title(doc),
    )
    src = Source(target, b"", w, h, bits, mask)
    src.reader = _read_steps(src, read, space, source_name)
    return src


STRIP_BYTES = 8 << 20  # per step on the UI thread, at most: 4096-wide images in 128-row strips


def _read_steps(src: Source, read: Callable[..., Any], space: Space, name: str) -> Iterator[None]:
    """Read ``src``'s pixels a strip per step (each ~0.1 s at most); when the layer is not sRGB RGBA
    8/16-bit, each strip is converted into the wire format right after it is read, in steps of
    its own (colour.py). The strips are appended to one bytearray: a final join or ``bytes()`` of a
    4096x4096 16-bit image would stop the UI for 0.1-0.2 s."""
    x, y, w, h = src.target.x, src.target.y, src.width, src.height
    rows = max(1, STRIP_BYTES // (16 * w))  # 16 bytes: the widest pixel (RGBA, 32-bit float)
    wire = src.target.wire_space
    conv = None if wire == space else converter(space, wire, w)
    out = bytearray()  # grows a strip at a time: bytearray(n) would zero all of it in one call
    try:
        for top in range(0, h, rows):
            n = min(rows, h - top)
            with uitime.timed("pixelData strip"):
                strip: bytes | bytearray = bytes(read(x, y + top, w, n))
            if not strip:
                raise DocumentError(f"Krita returned no pixels for '{name}'.")
            if conv is not None:
                yield
                strip = yield from converted(strip, w, n, space, wire, conv)
            out += strip
            yield
    finally:
        if conv is not None:
            conv.close()
    if conv is not None:
        src.notes.append(f"converted from {'/'.join(space)} to sRGB {wire[1]} for the daemon")
    src.pixels = out
    src.reader = None


def converter(src: Space, dst: Space, w: int) -> colour.Converter:
    """A colour.Converter (close it after), its failure a DocumentError."""
    try:
        return colour.Converter(src, dst, w)
    except colour.ConversionError as e:
        raise DocumentError(str(e)) from None


def wire_space(space: Space) -> Space:
    """The colour space pixels in ``space`` travel in."""
    model, depth, profile = space
    if model == "RGBA" and depth in DEPTH_BITS and is_srgb(profile):
        return space
    # 16 bits even from U8: two conversions at 8 bits would cost a few levels of precision
    return ("RGBA", "U16", SRGB)


def is_srgb(profile: str) -> bool:
    """sRGB primaries with the sRGB curve (not 'ClayRGB-…-srgbtrc', not linear 'g10')."""
    low = profile.strip().lower()
    return low in _SRGB_NAMES or (low.startswith("srgb") and "srgbtrc" in low)


def converted(data: bytes | bytearray | memoryview, w: int, h: int, src: Space, dst: Space,
              conv: colour.Converter | None = None) -> Generator[None, None, bytearray]:
    """Krita-native pixels converted from ``src`` to ``dst`` in a throw-away document, a strip per
    step (colour.py); the generator's value is the converted pixels."""
    try:
        return (yield from colour.convert_steps(data, w, h, src, dst, conv))
    except colour.ConversionError as e:
        raise DocumentError(str(e)) from None


# -- helpers ----------------------------------------------------------------------------------
def space_of(obj: Any) -> Space:
    """(colour model, depth, profile) of a document or node."""
    return (obj.colorModel(), obj.colorDepth(), obj.colorProfile())


def resolution(doc: Any) -> float:
    """The document's pixels per inch (72 when Krita cannot say)."""
    try:
        return float(doc.resolution()) or 72.0
    except Exception:
        return 72.0


def title(doc: Any) -> str:
    """The name the user knows the document by: its file's name, or its title while unsaved."""
    path = doc.fileName() or ""
    return path.replace("\\", "/").rsplit("/", 1)[-1] or doc.name() or "Untitled"


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
