"""Classical skin detection: where texture and grain belong.

A soft mask from two well-known colour rules (Chai & Ngan's YCrCb box and a hue/saturation band in HSV),
each with smooth edges so the mask has no hard borders, cleaned with a blur proportional to the image
size. Optionally restricted to faces found by OpenCV's Haar cascade (grown to take in forehead and neck).
"""

from __future__ import annotations

import numpy as np


def _band(x: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """1 inside [lo, hi], falling to 0 over ``soft`` outside, smoothly."""
    up = np.clip((x - (lo - soft)) / soft, 0, 1)
    down = np.clip(((hi + soft) - x) / soft, 0, 1)
    t = np.minimum(up, down)
    return t * t * (3 - 2 * t)


def skin_mask(rgb: np.ndarray, *, face_only: bool = False) -> np.ndarray:
    """float32 (H, W) in [0, 1]: how much each pixel looks like skin."""
    import cv2

    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 * 255 + 128
    cb = (b - y) * 0.564 * 255 + 128
    ycrcb = _band(cr, 138, 175, 6) * _band(cb, 80, 128, 8) * _band(y * 255, 60, 255, 25)
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2HSV)
    hue, sat = hsv[..., 0], hsv[..., 1]  # hue in degrees 0..360, saturation 0..1
    hue = np.where(hue > 300, hue - 360, hue)
    hsv_rule = _band(hue, -5, 40, 8) * _band(sat, 0.2, 0.68, 0.06)
    mask = np.sqrt(ycrcb * hsv_rule).astype(np.float32)
    sigma = max(1.0, min(rgb.shape[:2]) / 256)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    if face_only:
        mask *= face_boxes_mask(rgb)
    return np.clip(mask, 0, 1).astype(np.float32)


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (x, y, w, h), largest first, from OpenCV's bundled Haar cascade."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        return []
    grey = (np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1) * 255).astype(np.uint8)
    side = min(grey.shape)
    found = cascade.detectMultiScale(grey, 1.1, 5, minSize=(max(24, side // 16),) * 2)
    boxes = [tuple(int(v) for v in f) for f in found]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def face_boxes_mask(rgb: np.ndarray, grow: float = 0.6) -> np.ndarray:
    """1 inside each detected face box grown by ``grow`` of its size (forehead, ears, neck); all ones
    when no face is found, so the caller falls back to the colour rule alone."""
    import cv2

    h, w = rgb.shape[:2]
    boxes = detect_faces(rgb)
    if not boxes:
        return np.ones((h, w), np.float32)
    m = np.zeros((h, w), np.float32)
    for x, y, bw, bh in boxes:
        gx, gy = int(bw * grow / 2), int(bh * grow / 2)
        m[max(0, y - gy) : min(h, y + bh + 2 * gy), max(0, x - gx) : min(w, x + bw + gx)] = 1
    return cv2.GaussianBlur(m, (0, 0), max(1.0, min(h, w) / 128))
