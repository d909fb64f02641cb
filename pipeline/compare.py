"""Before/after pictures for people: the plain resample next to the result, plus a zoomed crop."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from . import images
from .faces.detect import detect_faces
from .images import Image


def side_by_side(before: Image, after: Image, *, labels: tuple[str, str] = ("before", "after")) -> Image:
    """[before | after] on top, and a 3x zoom of the same face (or centre) crop of both below.

    ``before`` is resized to ``after``'s size with Lanczos so the two differ only by processing.
    """
    h, w = after.height, after.width
    left = images.resize_rgb(before.rgb, (h, w)) if before.size != after.size else before.rgb
    right = after.rgb
    faces = detect_faces(right)
    side = max(32, min(h, w) // 6)
    if faces:
        x0, y0, x1, y1 = (int(v) for v in faces[0].box)
        cx, cy = x0 + (x1 - x0) // 2, y0 + (y1 - y0) // 2
    else:
        cx, cy = w // 2, h // 2
    x0 = int(np.clip(cx - side // 2, 0, max(0, w - side)))
    y0 = int(np.clip(cy - side // 2, 0, max(0, h - side)))
    zoom = w // side
    crops = [
        np.repeat(np.repeat(a[y0 : y0 + side, x0 : x0 + side], zoom, 0), zoom, 1) for a in (left, right)
    ]
    top = np.concatenate([left, right], axis=1)
    bottom = np.concatenate(crops, axis=1)
    pad = top.shape[1] - bottom.shape[1]
    if pad > 0:
        bottom = np.pad(bottom, ((0, 0), (0, pad), (0, 0)))
    canvas = np.concatenate([top, bottom[:, : top.shape[1]]], axis=0)
    pim = PILImage.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(pim)
    for i, text in enumerate(labels):
        for j, label in enumerate((text, f"{text} (zoom {zoom}x)")):
            x, y = i * w + 8, 8 + j * h
            draw.rectangle([x - 4, y - 2, x + 8 * len(label) + 4, y + 14], fill=(0, 0, 0))
            draw.text((x, y), label, fill=(255, 255, 255))
    arr = np.asarray(pim).astype(np.float32) / 255
    return Image(rgb=arr, bit_depth=8, mode="RGB")
