"""Selection islands: the separate parts of a selection, each refined as a job of its own.

Both plug-ins run this on the selection's 8-bit coverage (Krita's and GIMP's Pythons have no numpy,
so it is plain Python over bytes). The mask is looked at on a coarse grid (at most ``GRID`` cells on
its longer side): two parts closer than one cell count as one island, which is what a retoucher
means by "two faces" and keeps the labelling fast (a 256 x 256 grid is a few hundredths of a second).
Each island's pixels are the selected pixels of its cells, so the islands never overlap and together
hold the whole selection.

Standard library only, Python 3.10 syntax.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

GRID = 256  # cells on the mask's longer side, at most
_SELECTED = re.compile(rb"[^\x00]+")
MAX_ISLANDS = 16  # more parts than this are refined as one job (e.g. a speckled selection)


@dataclass
class Islands:
    """The islands of one mask: ``labels`` per grid cell (0 = nothing selected, 1..n = island)."""

    width: int  # mask size in px
    height: int
    cell: int  # px per grid cell (square)
    cols: int
    rows: int
    labels: list[int]  # rows * cols
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # per island: x, y, w, h in px
    _cache: dict[tuple[int, int], list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    @property
    def count(self) -> int:
        return len(self.boxes)

    def mask_of(self, mask: bytes, index: int, box: tuple[int, int, int, int]) -> bytes:
        """The part of ``mask`` (the whole width x height coverage) inside ``box`` (x, y, w, h, px),
        with every pixel that does not belong to island ``index`` (0-based) set to 0."""
        x0, y0, w, h = box
        label = index + 1
        out = bytearray(w * h)
        for y in range(max(0, y0), min(self.height, y0 + h)):
            row = (y // self.cell) * self.cols
            src = y * self.width
            dst = (y - y0) * w
            for c0, c1 in self._runs(row, label):
                a, b = max(c0 * self.cell, x0, 0), min(c1 * self.cell, x0 + w, self.width)
                if a < b:
                    out[dst + a - x0 : dst + b - x0] = mask[src + a : src + b]
        return bytes(out)

    def _runs(self, row: int, label: int) -> list[tuple[int, int]]:
        """Column ranges [c0, c1) of the cells in grid row ``row`` (offset) with ``label``."""
        key = (row, label)
        if key in self._cache:
            return self._cache[key]
        runs, start = [], None
        for c in range(self.cols + 1):
            inside = c < self.cols and self.labels[row + c] == label
            if inside and start is None:
                start = c
            elif not inside and start is not None:
                runs.append((start, c))
                start = None
        self._cache[key] = runs
        return runs


def find_islands(mask: bytes, width: int, height: int, grid: int = GRID) -> Islands:
    """Label the selected parts of a width x height 8-bit mask (any value above 0 is selected),
    largest first; their pixel boxes are exact (the selected pixels' extent within each island)."""
    if len(mask) != width * height:
        raise ValueError(f"the mask has {len(mask)} bytes, not {width}x{height}")
    cell = max(1, -(-max(width, height) // grid))
    cols, rows = -(-width // cell), -(-height // cell)
    occupied = [False] * (rows * cols)
    for y in range(height):
        base = (y // cell) * cols
        for run in _SELECTED.finditer(mask, y * width, (y + 1) * width):
            for c in range((run.start() - y * width) // cell, (run.end() - 1 - y * width) // cell + 1):
                occupied[base + c] = True
    labels = [0] * (rows * cols)
    sizes = []
    for start in range(rows * cols):
        if not occupied[start] or labels[start]:
            continue
        label = len(sizes) + 1
        labels[start] = label
        todo, size = deque([start]), 0
        while todo:
            i = todo.popleft()
            size += 1
            r, c = divmod(i, cols)
            for dr in (-1, 0, 1):  # 8-connected: a diagonal touch joins
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols:
                        j = rr * cols + cc
                        if occupied[j] and not labels[j]:
                            labels[j] = label
                            todo.append(j)
        sizes.append(size)
    if len(sizes) > MAX_ISLANDS:  # too many to be meant: one job for everything
        labels = [1 if v else 0 for v in labels]
        sizes = [sum(sizes)]
    order = sorted(range(len(sizes)), key=lambda k: -sizes[k])  # largest first
    rename = {old + 1: new + 1 for new, old in enumerate(order)}
    labels = [rename.get(v, 0) for v in labels]
    out = Islands(width, height, cell, cols, rows, labels)
    out.boxes = [_pixel_box(out, mask, k) for k in range(len(sizes))]
    return out


def _pixel_box(isl: Islands, mask: bytes, index: int) -> tuple[int, int, int, int]:
    """The exact extent of island ``index``'s selected pixels."""
    label = index + 1
    x0, y0, x1, y1 = isl.width, isl.height, -1, -1
    for y in range(isl.height):
        row = (y // isl.cell) * isl.cols
        for c0, c1 in isl._runs(row, label):
            a, b = c0 * isl.cell, min(c1 * isl.cell, isl.width)
            seg = mask[y * isl.width + a : y * isl.width + b]
            left = len(seg) - len(seg.lstrip(b"\0"))
            if left == len(seg):
                continue
            right = len(seg.rstrip(b"\0"))
            x0, x1 = min(x0, a + left), max(x1, a + right)
            y0, y1 = min(y0, y), max(y1, y + 1)
    return (x0, y0, x1 - x0, y1 - y0)


def pad_box(box: tuple[int, int, int, int], pad: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` grown by ``pad`` px on every side, clipped to width x height."""
    x, y, w, h = box
    x0, y0 = max(0, x - pad), max(0, y - pad)
    return (x0, y0, min(width, x + w + pad) - x0, min(height, y + h + pad) - y0)


# ------------------------------------------------------------------------------- jobs from a selection

FACE_GROW = 0.35  # a detected face box grows by this share of its size on every side (forehead, chin)


@dataclass
class Part:
    """One job's share of a selection, in the coordinates of the area the plug-in read."""

    box: tuple[int, int, int, int]  # x, y, w, h: the pixels to send (the selected part plus padding)
    mask: bytes | bytearray | None  # box-sized 8-bit coverage; None = no selection (the whole box counts)
    label: str  # "island 2 of 3", "face 1 of 2", "" for the only part


def split(mask: bytes | None, width: int, height: int, *, padding: int, islands: bool = True,
          faces: list[tuple[int, int, int, int]] | None = None) -> tuple[list[Part], list[str]]:
    """The jobs a selection becomes (and notes for the user).

    ``mask``: the selection over the whole width x height area (None: nothing selected, the area is
    the job). ``faces``: face boxes found in the area (FindFaces) -> one job per face that has
    selected pixels, its box grown by FACE_GROW, else ``islands`` -> one job per island, else one job
    for the whole selection. Every part's box is padded by ``padding`` px within the area."""
    notes: list[str] = []
    if faces is not None:
        parts = _face_parts(mask, width, height, padding, faces)
        if parts:
            return parts, notes
        notes.append("no face was found in the selection: " + ("its islands are refined one by one"
                                                                 if islands and mask is not None else
                                                                 "the selection is refined as one"))
    if mask is None:
        return [Part((0, 0, width, height), None, "")], notes
    isl = find_islands(mask, width, height)
    if isl.count == 0:
        return [], notes
    if not islands or isl.count == 1:
        x0 = min(b[0] for b in isl.boxes)
        y0 = min(b[1] for b in isl.boxes)
        x1 = max(b[0] + b[2] for b in isl.boxes)
        y1 = max(b[1] + b[3] for b in isl.boxes)
        box = pad_box((x0, y0, x1 - x0, y1 - y0), padding, width, height)
        return [Part(box, crop(mask, width, box), "")], notes
    parts = []
    for i, b in enumerate(isl.boxes):
        box = pad_box(b, padding, width, height)
        parts.append(Part(box, isl.mask_of(mask, i, box), f"island {i + 1} of {isl.count}"))
    return parts, notes


def _face_parts(mask: bytes | None, width: int, height: int, padding: int,
                faces: list[tuple[int, int, int, int]]) -> list[Part]:
    parts = []
    for fx, fy, fw, fh in faces:
        gx, gy = round(fw * FACE_GROW), round(fh * FACE_GROW)
        face = pad_box((fx - gx, fy - gy, fw + 2 * gx, fh + 2 * gy), 0, width, height)
        if face[2] <= 0 or face[3] <= 0:
            continue
        box = pad_box(face, padding, width, height)
        region = bytearray(box[2] * box[3])
        ax, ay = face[0] - box[0], face[1] - box[1]
        for y in range(face[3]):
            row = (ay + y) * box[2] + ax
            if mask is None:
                region[row : row + face[2]] = b"\xff" * face[2]
            else:
                src = (face[1] + y) * width + face[0]
                region[row : row + face[2]] = mask[src : src + face[2]]
        if region.strip(b"\0"):
            parts.append(Part(box, bytes(region), ""))
    for i, p in enumerate(parts):
        p.label = f"face {i + 1} of {len(parts)}" if len(parts) > 1 else "face"
    return parts


def crop(data: bytes | bytearray, width: int, box: tuple[int, int, int, int],
         pixel_bytes: int = 1) -> bytes | bytearray:
    """The ``box`` (x, y, w, h) of row-major pixels ``width`` wide, ``pixel_bytes`` each.

    A large crop is appended a row at a time to a new bytearray: the plug-ins run this on a worker
    thread beside the editor's UI thread, and one join or slice over a 4096x4096 16-bit image holds
    Python's lock for 0.1-0.2 s."""
    x, y, w, h = box
    stride, start, size = width * pixel_bytes, x * pixel_bytes, w * pixel_bytes
    if x == 0 and w == width and y == 0 and h * stride == len(data):
        return data  # the whole picture: no copy
    if h * size <= _ONE_COPY_BYTES:
        if x == 0 and w == width:
            return bytes(data[y * stride : (y + h) * stride])
        return b"".join(data[(y + r) * stride + start : (y + r) * stride + start + size] for r in range(h))
    out, view = bytearray(), memoryview(data)  # grown a row at a time: bytearray(n) zeroes it all at once
    for r in range(h):
        row = (y + r) * stride + start
        out += view[row : row + size]
    return out


_ONE_COPY_BYTES = 4 << 20  # smaller crops take one copy (a few ms)
