"""Alignment and paste-back (pipeline.faces.align) and detection post-processing, without any weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.faces import FFHQ_TEMPLATE_512, Face, align, paste_face, paste_mask, warp_face
from pipeline.faces.detect import decode_boxes, decode_landmarks, nms, priors
from pipeline.models.faces.retinaface import CONFIGS

from ._face_helpers import (
    PORTRAIT_LANDMARKS,
    ConstantRestorer,
    IdentityRestorer,
    MarkerRestorer,
    dot_centres,
    synthetic_image,
    template_landmarks,
)


def round_trip(rgb: np.ndarray, landmarks: np.ndarray, restorer=None) -> tuple[np.ndarray, np.ndarray]:
    al = align(landmarks)
    assert al is not None
    restorer = restorer or IdentityRestorer()
    out = paste_face(rgb, restorer.restore(warp_face(rgb, al)), al)
    full = np.zeros(rgb.shape[:2], np.float32)
    mask, (x0, y0, x1, y1) = paste_mask(al, *rgb.shape[:2])
    full[y0:y1, x0:x1] = mask
    return out, full


@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0])
def test_alignment_recovers_a_known_similarity(angle):
    pts = template_landmarks(300.5, 210.25, eye_dist=57.0, angle_deg=angle)
    al = align(pts)
    assert al is not None
    assert al.scale == pytest.approx(np.linalg.norm(FFHQ_TEMPLATE_512[1] - FFHQ_TEMPLATE_512[0]) / 57.0, rel=1e-6)
    np.testing.assert_allclose(al.to_image(FFHQ_TEMPLATE_512), pts, atol=1e-3)


def test_degenerate_landmarks_give_no_alignment():
    assert align(np.full((5, 2), 100.0)) is None
    assert align(np.full((5, 2), np.nan)) is None


def test_identity_round_trip_is_exact_to_rounding_on_a_smooth_picture():
    pts = template_landmarks(200, 180, eye_dist=48, angle_deg=12)
    rgb = synthetic_image(400, 380, [pts])
    out, mask = round_trip(rgb, pts)
    assert mask.max() == 1.0 and (mask == 1).sum() > 100 * 100
    # everywhere, mask edge included: the crop holds the face at ~2.6x, nothing is lost on the way back
    assert np.abs(out - rgb).max() < 0.5 / 255
    np.testing.assert_array_equal(out[mask == 0], rgb[mask == 0])


def test_identity_round_trip_on_the_portrait(portrait):
    rgb = portrait.rgb
    out, mask = round_trip(rgb, PORTRAIT_LANDMARKS)
    inside = mask == 1
    assert inside.sum() > 120 * 120
    diff = np.abs(out - rgb)
    # Lanczos both ways on a real photo (the face enlarged ~3x into the crop): 4.5/255 on the sharpest
    # eyelash pixel, 99.9 % under 1.7/255, 0.16/255 on average
    assert diff[inside].max() < 6 / 255
    assert np.percentile(diff[inside], 99.9) < 2 / 255
    assert diff[inside].mean() < 0.25 / 255
    np.testing.assert_array_equal(out[mask == 0], rgb[mask == 0])


def test_the_crop_is_the_face_the_landmarks_point_at(portrait):
    """The template's points come back where the landmarks are, and the crop shows the portrait's face:
    its eyes are dark blobs where the template's eyes are."""
    al = align(PORTRAIT_LANDMARKS)
    crop = warp_face(portrait.rgb, al)
    luma = crop @ np.array([0.299, 0.587, 0.114], np.float32)
    for eye in FFHQ_TEMPLATE_512[:2]:
        x, y = np.round(eye).astype(int)
        around = luma[y - 40 : y + 40, x - 40 : x + 40]
        assert luma[y - 6 : y + 7, x - 6 : x + 7].mean() < around.mean() - 0.05  # pupil/lashes darker than skin
    out, _ = round_trip(np.zeros_like(portrait.rgb), PORTRAIT_LANDMARKS, MarkerRestorer())
    expected = al.to_image(FFHQ_TEMPLATE_512)  # where the fitted similarity puts the template
    np.testing.assert_allclose(dot_centres(out[..., 0], expected, radius=6), expected, atol=0.35)
    # 5 measured points never fit a similarity exactly (this mouth is wider than FFHQ's average); the
    # fit stays within 0.15 eye distances of every landmark (measured: 0.12, the smiling mouth corners)
    eye_dist = np.linalg.norm(PORTRAIT_LANDMARKS[1] - PORTRAIT_LANDMARKS[0])
    assert np.linalg.norm(expected - PORTRAIT_LANDMARKS, axis=1).max() < 0.15 * eye_dist


def test_markers_land_exactly_on_synthetic_landmarks():
    pts = template_landmarks(140, 150, eye_dist=70, angle_deg=-25)
    out, _ = round_trip(np.zeros((320, 300, 3), np.float32), pts, MarkerRestorer())
    np.testing.assert_allclose(dot_centres(out[..., 0], pts, radius=8), pts, atol=0.35)


def test_a_face_cut_by_the_image_border():
    # eye midpoint 10 px from the left edge: the left half of the face is outside the picture
    pts = template_landmarks(10, 120, eye_dist=60)
    rgb = synthetic_image(260, 240, [pts])
    out, mask = round_trip(rgb, pts)
    assert mask[:, 0].max() == 1.0  # the paste reaches the border instead of fading before it
    assert np.abs(out - rgb).max() < 0.5 / 255  # no grey fill bleeds into the border column
    al = align(pts)
    crop = warp_face(rgb, al)
    np.testing.assert_allclose(crop[256, 10], [132 / 255, 133 / 255, 135 / 255], atol=1e-6)  # beyond: grey
    painted, _ = round_trip(rgb, pts, ConstantRestorer((1.0, 0.0, 1.0)))
    np.testing.assert_allclose(painted[120, 0], [1.0, 0.0, 1.0], atol=1e-5)
    visible = pts[pts[:, 0] > 8]
    marked, _ = round_trip(np.zeros_like(rgb), pts, MarkerRestorer())
    np.testing.assert_allclose(dot_centres(marked[..., 0], visible, radius=8), visible, atol=0.35)


def test_a_face_larger_than_the_crop_is_shrunk_without_aliasing():
    pts = template_landmarks(700, 640, eye_dist=400)  # a face ~3x the 512² crop
    yy, xx = np.mgrid[0:1300, 0:1400].astype(np.float32)
    stripes = (0.5 + 0.5 * np.sin(xx * np.pi / 1.5)).astype(np.float32)  # 3 px period: above the crop's Nyquist
    rgb = np.repeat(stripes[..., None], 3, axis=2)
    crop = warp_face(rgb, align(pts))
    # area-shrunk first, the stripes average to grey instead of folding into a false low-frequency pattern
    assert crop[100:400, 100:400].std() < 0.05
    assert crop[100:400, 100:400].mean() == pytest.approx(0.5, abs=0.05)


def test_opacity_and_selection_limit_the_paste():
    pts = template_landmarks(150, 150, eye_dist=60)
    rgb = synthetic_image(300, 300, [pts])
    al = align(pts)
    red = ConstantRestorer((1, 0, 0)).restore(warp_face(rgb, al))
    np.testing.assert_array_equal(paste_face(rgb, red, al, opacity=0.0), rgb)
    half = paste_face(rgb, red, al, opacity=0.5)
    full = paste_face(rgb, red, al, opacity=1.0)
    np.testing.assert_allclose(half, (rgb + full) / 2, atol=1e-6)
    sel = np.zeros((300, 300), np.float32)
    sel[:, :150] = 1
    left = paste_face(rgb, red, al, selection=sel)
    np.testing.assert_array_equal(left[:, 150:], rgb[:, 150:])
    np.testing.assert_allclose(left[150, 140], [1, 0, 0], atol=1e-5)


def test_face_from_landmarks_box_surrounds_them():
    f = Face.from_landmarks(PORTRAIT_LANDMARKS)
    x0, y0, x1, y1 = f.box
    assert x0 < PORTRAIT_LANDMARKS[:, 0].min() and x1 > PORTRAIT_LANDMARKS[:, 0].max()
    assert y0 < PORTRAIT_LANDMARKS[:, 1].min() and y1 > PORTRAIT_LANDMARKS[:, 1].max()
    assert 60 < f.size < 130  # the recorded MTCNN box is 87 x 110


def test_priors_follow_the_head_order():
    cfg = CONFIGS["mobilenet0.25"]
    p = priors(cfg, 100, 70)  # odd sizes: feature maps are ceil(size / step)
    assert p.shape == ((13 * 9 + 7 * 5 + 4 * 3) * 2, 4)
    # first level, row 0, column 0, both anchor sizes; then column 1
    np.testing.assert_allclose(p[0].numpy(), [4 / 70, 4 / 100, 16 / 70, 16 / 100])
    np.testing.assert_allclose(p[1].numpy(), [4 / 70, 4 / 100, 32 / 70, 32 / 100])
    np.testing.assert_allclose(p[2, :2].numpy(), [12 / 70, 4 / 100])


def test_decoding_and_nms():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    loc = torch.zeros(3, 4)
    loc[2] = torch.tensor([1.0, 0.0, 0.0, np.log(2) / 0.2])  # shift right by 0.1*0.1, height x2
    boxes = decode_boxes(loc, anchors, (0.1, 0.2)).numpy()
    np.testing.assert_allclose(boxes[0], [0.4, 0.4, 0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(boxes[2], [0.06, 0.0, 0.16, 0.2], atol=1e-6)
    lm = decode_landmarks(torch.ones(3, 10), anchors, (0.1, 0.2)).numpy()
    np.testing.assert_allclose(lm[0], np.full((5, 2), 0.52), atol=1e-6)
    assert nms(boxes, np.array([0.9, 0.95, 0.5], np.float32), 0.4) == [1, 2]  # 0 overlaps 1 too much
