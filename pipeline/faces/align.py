"""5 landmarks -> similarity transform onto the FFHQ 512² template; warp the face in, paste it back.

This is facexlib's ``FaceRestoreHelper`` (``align_warp_face`` / ``paste_faces_to_input_image`` without
the face-parsing net), which GFPGAN, CodeFormer and ReActor all use, with four deliberate differences:

- Lanczos-4 instead of bilinear both ways: a round trip through the 512² crop then returns the input to
  within ~3/255 on a photo (bilinear: ~40/255), so only what the restorer changes shows.
- Faces larger than the crop are shrunk with INTER_AREA first (warpAffine alone would alias).
- Where the crop reaches past the image border, the pixels next to the border are extended (so no grey
  bleeds into the border row on paste-back); further out the crop gets facexlib's grey (132,133,135).
- Warps run on the face's bounding box only, so a 40 MP image costs no more than a small one.

Coordinates are cv2's: pixel centres at integers, x right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACE_SIZE = 512
# facexlib's standard 5 landmarks of FFHQ faces at 512²: left eye, right eye, nose, mouth left, mouth right
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)
FILL_RGB = (132 / 255, 133 / 255, 135 / 255)  # facexlib's borderValue (135, 133, 132) in BGR
SHRINK_FIRST_BELOW = 0.75  # crop px per image px under which the face is area-shrunk before warping
LANCZOS_PAD = 5  # px of source around the face a Lanczos-4 warp reads


@dataclass(frozen=True)
class Alignment:
    """Where one face sits: ``matrix`` (2, 3) maps image px to crop px of a ``size``² aligned crop."""

    matrix: np.ndarray
    size: int = FACE_SIZE

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (> 1: the face is smaller than the crop and gets enlarged)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop coordinates -> image coordinates."""
        import cv2

        inv = cv2.invertAffineTransform(self.matrix)
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        return pts @ inv[:, :2].T + inv[:, 2]

    def bounds(self, height: int, width: int, pad: int) -> tuple[int, int, int, int] | None:
        """Image pixel box (x0, y0, x1, y1) covering the crop square plus ``pad``, clipped; None if the
        square lies entirely outside the image."""
        s = self.size - 1
        corners = self.to_image(np.array([[0, 0], [s, 0], [0, s], [s, s]]))
        x0 = max(0, int(np.floor(corners[:, 0].min())) - pad)
        y0 = max(0, int(np.floor(corners[:, 1].min())) - pad)
        x1 = min(width, int(np.ceil(corners[:, 0].max())) + pad + 1)
        y1 = min(height, int(np.ceil(corners[:, 1].max())) + pad + 1)
        return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)

    def shifted(self, x0: float, y0: float) -> np.ndarray:
        """The matrix for coordinates relative to (x0, y0) of the image."""
        m = self.matrix.astype(np.float64).copy()
        m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
        return m


def align(landmarks: np.ndarray, size: int = FACE_SIZE) -> Alignment | None:
    """The similarity transform (rotation, uniform scale, shift) putting 5 landmarks on the template,
    fitted as facexlib does (cv2.estimateAffinePartial2D with LMEDS); None if it cannot be fitted."""
    import cv2

    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.isfinite(pts).all():
        return None
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    m, _ = cv2.estimateAffinePartial2D(pts, template, method=cv2.LMEDS)
    if m is None or not np.isfinite(m).all():
        return None
    al = Alignment(m.astype(np.float64), size)
    if not 1e-3 < al.scale < 1e3:  # collapsed landmarks (a confused detector) give a degenerate fit
        return None
    return al


def warp_face(rgb: np.ndarray, al: Alignment) -> np.ndarray:
    """The aligned ``size``² crop (float32 RGB 0..1) a face restorer takes."""
    import cv2

    h, w = rgb.shape[:2]
    n = al.size
    box = al.bounds(h, w, LANCZOS_PAD)
    if box is None:
        return np.broadcast_to(np.asarray(FILL_RGB, np.float32), (n, n, 3)).copy()
    x0, y0, x1, y1 = box
    src = np.ascontiguousarray(rgb[y0:y1, x0:x1], dtype=np.float32)
    m = al.shifted(x0, y0)
    if al.scale < SHRINK_FIRST_BELOW:
        src, m = _area_shrink(src, m, al.scale)
    flags = cv2.INTER_LANCZOS4
    crop = cv2.warpAffine(src, m, (n, n), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    covered = cv2.warpAffine(np.ones(src.shape[:2], np.float32), m, (n, n), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # the box is padded past the crop square, so "not covered" only happens beyond the image border
    crop = np.where(covered[..., None] > 1e-3, crop, np.asarray(FILL_RGB, np.float32))
    return np.clip(crop, 0.0, 1.0).astype(np.float32)


def paste_mask(al: Alignment, height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """facexlib's soft square mask in image space, on the face's box: the crop square mapped back,
    eroded by a rim, then blurred over an edge of sqrt(face area)/20 px. Returns (mask, box) or None."""
    import cv2

    box = al.bounds(height, width, 2)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    m = al.shifted(x0, y0)
    n = al.size
    mask = cv2.warpAffine(np.ones((n, n), np.float32), m, (x1 - x0, y1 - y0),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # drop the half-covered rim (facexlib erodes 2 px); erode() treats beyond-the-box as 1, so a face
    # cut by the image border stays fully pasted up to that border
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    edge = int(np.sqrt(float(mask.sum()))) // 20
    if edge > 0:
        k = 2 * edge + 1
        mask = cv2.erode(mask, np.ones((k, k), np.uint8))
        mask = cv2.GaussianBlur(mask, (k, k), 0)
    return np.clip(mask, 0.0, 1.0).astype(np.float32), box


def paste_face(
    rgb: np.ndarray,
    face: np.ndarray,
    al: Alignment,
    *,
    opacity: float = 1.0,
    selection: np.ndarray | None = None,
) -> np.ndarray:
    """``rgb`` with the (restored) aligned crop ``face`` pasted back through the soft mask, times
    ``opacity`` and the job's ``selection`` (H, W, 0..1) where given. Returns a new array."""
    import cv2

    out = np.array(rgb, dtype=np.float32, copy=True)
    h, w = rgb.shape[:2]
    found = paste_mask(al, h, w)
    if found is None or opacity <= 0:
        return out
    mask, (x0, y0, x1, y1) = found
    # WARP_INVERSE_MAP: each image pixel samples the crop at matrix @ pixel, the exact inverse of warp_face
    back = cv2.warpAffine(np.ascontiguousarray(face, np.float32), al.shifted(x0, y0), (x1 - x0, y1 - y0),
                          flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    alpha = mask * np.float32(opacity)
    if selection is not None:
        alpha = alpha * selection[y0:y1, x0:x1]
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = region + (np.clip(back, 0.0, 1.0) - region) * alpha[..., None]
    return out


def _area_shrink(src: np.ndarray, m: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-filter ``src`` down by ``scale`` and fold the resize into ``m`` so the warp is ~1:1."""
    import cv2

    h, w = src.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / w, nh / h
    # cv2.resize maps x -> (x + 0.5) * f - 0.5; the warp must read the small image at the same places
    undo = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]], np.float64)
    return small, (np.vstack([m, [0, 0, 1]]) @ undo)[:2]
