"""Shared bits of the face tests: recorded landmarks, synthetic faces with known geometry, stand-in
restorers (the real ones are tested on their own in test_face_restore.py), a direct StageContext."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.faces import FFHQ_TEMPLATE_512, Face

# examples/portrait_astronaut_512.png, recorded once with a real detector: MTCNN (facenet-pytorch 2.6.0,
# the weights its wheel ships) gave box [181.05, 62.16, 267.75, 172.05], score 0.99999, and these five
# points (left eye, right eye, nose, mouth left, mouth right), checked by eye on a 3x zoom.
PORTRAIT_BOX = (181.05, 62.16, 267.75, 172.05)
PORTRAIT_LANDMARKS = np.array(
    [[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]], np.float32)


def portrait_face() -> Face:
    return Face(PORTRAIT_BOX, PORTRAIT_LANDMARKS.copy(), 0.99999)


def template_landmarks(cx: float, cy: float, eye_dist: float, angle_deg: float = 0.0) -> np.ndarray:
    """The FFHQ template moved by an exact similarity: its eye midpoint to (cx, cy), eyes ``eye_dist``
    apart, rotated by ``angle_deg`` (so the fitted alignment is known exactly)."""
    t = FFHQ_TEMPLATE_512
    s = eye_dist / np.linalg.norm(t[1] - t[0])
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
    mid = (t[0] + t[1]) / 2
    return ((t - mid) @ rot.T + np.array([cx, cy])).astype(np.float32)


def synthetic_image(h: int, w: int, faces: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """A smooth picture (soft gradient background, a skin-coloured ellipse with soft dark features per
    face) whose content is band-limited, so resampling round trips are exact to within 8-bit rounding."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.3 + 0.3 * xx / w, 0.4 + 0.2 * yy / h, 0.5 + 0.1 * (xx + yy) / (w + h)], -1)
    for pts in faces:
        eye = float(np.linalg.norm(pts[1] - pts[0]))
        c = pts.mean(axis=0)
        skin = np.exp(-(((xx - c[0]) / (1.3 * eye)) ** 2 + ((yy - c[1]) / (1.7 * eye)) ** 2) ** 2)
        img = img + (np.array([0.85, 0.65, 0.55], np.float32) - img) * skin[..., None]
        for p in pts:
            blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * (0.12 * eye) ** 2))
            img = img * (1 - 0.6 * blob[..., None])
    img = img + rng.normal(0, 0.002, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 2.0)
    return np.clip(img, 0, 1).astype(np.float32)


class IdentityRestorer:
    """Gives the crop back unchanged: what survives is only the alignment and paste-back."""

    arch = "Identity"

    def __init__(self) -> None:
        self.calls = 0

    def restore(self, crop: np.ndarray, *, fidelity: float = 0.5, seed: int = 0) -> np.ndarray:
        self.calls += 1
        return crop.copy()


class MarkerRestorer(IdentityRestorer):
    """Paints a bright dot on each of the 5 template points of the crop (black elsewhere), so the test
    can see where each template point lands in the image after paste-back."""

    arch = "Marker"

    def restore(self, crop: np.ndarray, *, fidelity: float = 0.5, seed: int = 0) -> np.ndarray:
        self.calls += 1
        n = crop.shape[0]
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        out = np.zeros_like(crop)
        for p in FFHQ_TEMPLATE_512 * (n / 512):
            out[..., 0] += np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 6.0**2))
        return np.clip(out, 0, 1)


class ConstantRestorer(IdentityRestorer):
    arch = "Constant"

    def __init__(self, colour=(1.0, 0.0, 1.0)) -> None:
        super().__init__()
        self.colour = np.asarray(colour, np.float32)

    def restore(self, crop: np.ndarray, *, fidelity: float = 0.5, seed: int = 0) -> np.ndarray:
        self.calls += 1
        return np.broadcast_to(self.colour, crop.shape).copy()


def dot_centres(channel: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    """Intensity-weighted centre of the signal within ``radius`` px of each expected point."""
    h, w = channel.shape
    out = []
    for x, y in points:
        x0, x1 = max(0, int(x) - radius), min(w, int(x) + radius + 1)
        y0, y1 = max(0, int(y) - radius), min(h, int(y) + radius + 1)
        win = channel[y0:y1, x0:x1].astype(np.float64)
        win = np.clip(win - 0.5 * win.max(), 0, None)  # the dot's core, not the skirt of a neighbour
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out.append([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    return np.array(out)


def stage_context(*, mask=None, weights=None, seed: int = 0, models=None, shape=(512, 512)):
    """A StageContext as pipeline.run builds it, recording what the stage logs and reports."""
    import torch

    from pipeline.models import ModelCache, WeightLocator
    from pipeline.run import CancelToken, StageContext

    events: list[tuple] = []
    ctx = StageContext(
        stage_id="face_restore", seed=seed, device=torch.device("cpu"), dtype=torch.float32,
        cancel=CancelToken(), models=models or ModelCache(),
        weights=weights or {"gfpgan": Path("GFPGANv1.4.pth"), "retinaface_resnet50": Path("det.pth")},
        target_size=shape, mask=mask, locator=WeightLocator(),
        on_progress=lambda p: events.append((p.step, p.steps, p.tile, p.tiles, p.message, p.preview)),
    )
    ctx.events = events  # type: ignore[attr-defined]
    return ctx


def logged(ctx) -> list[str]:
    return [e[4] for e in ctx.events if e[1] == 0 and e[4]]
