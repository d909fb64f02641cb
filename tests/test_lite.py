"""The lite preset adds visible texture on skin and leaves the rest close to a plain resample."""

import cv2
import numpy as np

import pipeline
from pipeline import images
from pipeline.faces import detect_faces
from pipeline.skin import skin_mask


def _high_freq_energy(rgb: np.ndarray, where: np.ndarray) -> float:
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    hp = y - cv2.GaussianBlur(y, (0, 0), 1.5)
    return float((hp[where] ** 2).mean())


def test_texture_goes_on_skin_not_elsewhere(portrait):
    r = pipeline.run(pipeline.build("lite", scale=2.0), portrait, seed=11)
    plain = images.resize_rgb(portrait.rgb, (1024, 1024))
    m = skin_mask(plain)
    skin, other = m > 0.8, m < 0.05
    assert skin.sum() > 20_000 and other.sum() > 400_000
    gain_skin = _high_freq_energy(r.image.rgb, skin) / _high_freq_energy(plain, skin)
    gain_other = _high_freq_energy(r.image.rgb, other) / _high_freq_energy(plain, other)
    assert gain_skin > 2.0, (gain_skin, gain_other)
    assert gain_other < 1.25, (gain_skin, gain_other)
    # away from skin the picture is the plain resample plus faint grain
    diff = np.abs(r.image.rgb - plain)[other]
    assert diff.mean() < 0.01


def test_skin_mask_finds_the_face_in_the_example(portrait):
    m = skin_mask(portrait.rgb)
    faces = detect_faces(portrait.rgb)
    assert faces, "the weight-free (Haar cascade) detector finds the astronaut's face"
    x0, y0, x1, y1 = (int(v) for v in faces[0].box)
    x, y, w, h = x0, y0, x1 - x0, y1 - y0
    face = m[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
    assert face.mean() > 0.6
    assert m[:40, 400:].mean() < 0.05  # the grey-beige studio wall is not skin
    restricted = skin_mask(portrait.rgb, face_only=True)
    assert restricted[450:, :].max() < 0.05  # hands and suit far below the face are excluded


def test_grain_is_seeded_mono_or_colour_and_follows_weights(portrait):
    from pipeline.stages import grain

    from .test_stages import make_ctx

    rgb = np.full((64, 64, 3), 0.5, np.float32)
    p = grain.Params(strength=0.05)
    a = grain.run(rgb, p, make_ctx(seed=1))
    assert np.array_equal(a, grain.run(rgb, p, make_ctx(seed=1)))
    assert not np.array_equal(a, grain.run(rgb, p, make_ctx(seed=2)))
    assert np.allclose(a[..., 0], a[..., 1]) and np.allclose(a[..., 1], a[..., 2])  # mono
    colour = grain.run(rgb, grain.Params(strength=0.05, saturation=1.0), make_ctx(seed=1))
    assert not np.allclose(colour[..., 0], colour[..., 1])
    assert abs((a - rgb).std() - 0.05) < 0.01
    dark = np.full((64, 64, 3), 0.02, np.float32)
    assert (grain.run(dark, p, make_ctx(seed=1)) - dark).std() < 0.01  # midtone-weighted
    assert np.array_equal(grain.run(rgb, grain.Params(strength=0.0), make_ctx()), rgb)


def test_lite_is_labelled_lite_everywhere(portrait):
    recipe = pipeline.build("lite")
    assert recipe.label == "lite" and "not diffusion" in recipe.description.lower()
    assert pipeline.run(recipe, portrait, seed=3).layer_name == "Dermis (lite, 3)"
