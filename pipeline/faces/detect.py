"""Face detection, in one place: ``detect_faces(rgb, net)`` with a RetinaFace network (boxes and five
landmarks, for alignment), or ``detect_faces(rgb)`` with no weights at all (OpenCV's bundled Haar
cascade: frontal-face boxes only, what the lite preset's skin mask and the comparison picture need).

With a network it follows facexlib's ``FaceRestoreHelper.get_face_landmarks_5(resize=640)`` +
``RetinaFace.detect_faces`` (the path ReActor's "Restore Face" takes): resize so the shorter side is
``detect_size`` (Lanczos), subtract the BGR means, keep scores above ``confidence`` (0.97 there), NMS at
IoU 0.4, drop faces whose eyes are closer than 5 px (side views, specks), scale back. Anchors,
decoding and non-maximum suppression are facexlib's too.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np
import torch

from ..models.faces.retinaface import BGR_MEAN, RetinaFace, RetinaFaceConfig

EYE_DIST_MIN = 5.0  # px in the detection image: facexlib's eye_dist_threshold as ReActor sets it
PRE_NMS_TOP_K = 5000  # Pytorch_Retinaface's test-time cap: bounds NMS cost on a confused (or random) net


@dataclass(frozen=True)
class Face:
    """One face in image pixels: ``box`` (x0, y0, x1, y1), detector ``score``, and 5 ``landmarks`` (x, y):
    left eye, right eye, nose tip, left and right mouth corner, as seen in the image (None from the
    weight-free detector, which finds boxes only)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None  # float32 (5, 2)
    score: float = 1.0

    @property
    def centre(self) -> tuple[float, float]:
        """Between the eyes and the mouth (the landmarks' mean), else the box's centre."""
        if self.landmarks is not None:
            cx, cy = self.landmarks.mean(axis=0)
            return float(cx), float(cy)
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def size(self) -> float:
        """Shorter side of the box in px (what ``min_face`` compares against)."""
        x0, y0, x1, y1 = self.box
        return float(min(x1 - x0, y1 - y0))

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return float(max(0.0, x1 - x0) * max(0.0, y1 - y0))

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray | list, score: float = 1.0) -> Face:
        """A face known only by its landmarks (recorded, or from another detector): the box is the
        landmarks' extent grown the way a RetinaFace box surrounds them (forehead and chin included)."""
        pts = np.asarray(landmarks, np.float32).reshape(5, 2)
        eye_dist = float(np.linalg.norm(pts[1] - pts[0]))
        cx, cy = pts[:, 0].mean(), pts[:, 1].mean()
        half = max(eye_dist * 1.1, float(np.ptp(pts[:, 1])) * 1.2, 1.0)
        return cls((cx - half, cy - half * 1.15, cx + half, cy + half * 0.95), pts, score)


def priors(cfg: RetinaFaceConfig, height: int, width: int) -> torch.Tensor:
    """(P, 4) anchors (cx, cy, w, h) in 0..1 units, in the order the heads emit them (level, row,
    column, anchor): facexlib's PriorBox."""
    out = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes, strict=True):
        rows, cols = ceil(height / step), ceil(width / step)
        cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * step / height,
                                (torch.arange(cols) + 0.5) * step / width, indexing="ij")
        for_level = []
        for s in sizes:
            for_level.append(torch.stack([cx, cy, torch.full_like(cx, s / width),
                                          torch.full_like(cy, s / height)], dim=-1))
        out.append(torch.stack(for_level, dim=2).reshape(-1, 4))  # (rows, cols, anchors, 4)
    return torch.cat(out)


def decode_boxes(loc: torch.Tensor, anchors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """SSD box decoding -> (P, 4) x0, y0, x1, y1 in 0..1 units."""
    centre = anchors[:, :2] + loc[:, :2] * variance[0] * anchors[:, 2:]
    size = anchors[:, 2:] * torch.exp(loc[:, 2:] * variance[1])
    corner = centre - size / 2
    return torch.cat([corner, corner + size], dim=1)  # same float rounding as facexlib, so NMS agrees


def decode_landmarks(pre: torch.Tensor, anchors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """(P, 10) offsets -> (P, 5, 2) points in 0..1 units."""
    offsets = pre.reshape(-1, 5, 2)
    return anchors[:, None, :2] + offsets * variance[0] * anchors[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression (torchvision.ops.nms semantics: area = (x1-x0)*(y1-y0))."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return keep


def detect_faces(
    rgb: np.ndarray,
    net: RetinaFace | None = None,
    *,
    confidence: float = 0.97,
    nms_iou: float = 0.4,
    detect_size: int = 640,
) -> list[Face]:
    """Faces in an RGB float image (H, W, 3, 0..1), in its pixel coordinates.

    With ``net`` (a RetinaFace): best score first, with landmarks. ``detect_size``: the shorter side is
    resized to this before detection (0 = as is); RetinaFace finds faces of roughly 16-500 px, so 640
    suits portraits of any resolution, as in ReActor. Without ``net``: ``classical_faces``.
    """
    if net is None:
        return classical_faces(rgb)
    import cv2

    h, w = rgb.shape[:2]
    scale = 1.0 if detect_size <= 0 else min(h, w) / detect_size
    bgr = np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32) * 255.0
    if scale != 1.0:
        dw, dh = max(1, int(w / scale)), max(1, int(h / scale))
        bgr = cv2.resize(bgr, (dw, dh), interpolation=cv2.INTER_LANCZOS4)
        sx, sy = w / dw, h / dh
    else:
        sx = sy = 1.0
    # the network sees 8-bit values, as facexlib feeds it a uint8 image
    bgr = np.clip(np.rint(bgr), 0, 255) - np.asarray(BGR_MEAN, np.float32)
    dh, dw = bgr.shape[:2]
    param = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].to(param.device, param.dtype)
    with torch.inference_mode():
        loc, conf, landm = net(x)
    anchors = priors(net.cfg, dh, dw).to(loc.device)
    loc, conf, landm = loc[0].float(), conf[0].float(), landm[0].float()

    keep = torch.nonzero(conf > confidence).flatten()
    if keep.numel() > PRE_NMS_TOP_K:
        keep = keep[torch.argsort(conf[keep], descending=True)[:PRE_NMS_TOP_K]]
    if keep.numel() == 0:
        return []
    size = torch.tensor([dw, dh], dtype=torch.float32, device=loc.device)
    boxes = (decode_boxes(loc[keep], anchors[keep], net.cfg.variance) * size.repeat(2)).cpu().numpy()
    points = (decode_landmarks(landm[keep], anchors[keep], net.cfg.variance) * size).cpu().numpy()
    scores = conf[keep].cpu().numpy()
    # facexlib's pre-sort: with tied scores (it happens) the NMS outcome depends on the order
    order = scores.argsort()[::-1]
    boxes, points, scores = boxes[order], points[order], scores[order]
    faces = []
    for i in nms(boxes, scores, nms_iou):
        pts = points[i]
        if not np.isfinite(boxes[i]).all() or not np.isfinite(pts).all():
            continue
        if np.linalg.norm(pts[1] - pts[0]) < EYE_DIST_MIN:
            continue
        b = boxes[i]
        faces.append(Face((float(b[0] * sx), float(b[1] * sy), float(b[2] * sx), float(b[3] * sy)),
                          (pts * np.array([sx, sy], np.float32)).astype(np.float32), float(scores[i])))
    return faces


def classical_faces(rgb: np.ndarray) -> list[Face]:
    """Frontal faces from OpenCV's bundled Haar cascade (no weights needed), largest first, boxes only."""
    import cv2

    folder = cv2.data.haarcascades  # pyright: ignore[reportAttributeAccessIssue]  (cv2's stubs lack cv2.data)
    cascade = cv2.CascadeClassifier(folder + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        return []
    grey = (np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1) * 255).astype(np.uint8)
    side = min(grey.shape)
    found = cascade.detectMultiScale(grey, 1.1, 5, minSize=(max(24, side // 16),) * 2)
    boxes = sorted(((int(x), int(y), int(w), int(h)) for x, y, w, h in found), key=lambda b: -b[2] * b[3])
    return [Face((float(x), float(y), float(x + w), float(y + h)), None) for x, y, w, h in boxes]
