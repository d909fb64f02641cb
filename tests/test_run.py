"""pipeline.run: regions and masks, output modes, progress, cancellation, seeds, preflight."""

import threading

import numpy as np
import pytest

import pipeline
from pipeline import images
from pipeline.errors import Cancelled, InvalidParameter, MissingWeights, StageUnavailable

from .conftest import rng_image


def _img(h=96, w=128, channels=3, seed=0, depth=8):
    hi = 256 if depth == 8 else 65536
    raw = np.random.default_rng(seed).integers(0, hi, (h, w, channels)).astype(np.uint8 if depth == 8 else np.uint16)
    return images.from_array(raw)


def test_lite_full_image_has_the_scaled_size_and_keeps_metadata(portrait):
    r = pipeline.run(pipeline.build("lite", scale=1.5), portrait, seed=1)
    assert r.image.size == (768, 768) and r.canvas_size == (768, 768) and r.offset == (0, 0)
    assert r.layer_name == "Dermis (lite, 1)"
    assert r.image.bit_depth == portrait.bit_depth and r.image.mode == portrait.mode


def test_same_seed_same_result_other_seed_other_result():
    img = _img()
    recipe = pipeline.build("lite")
    a = pipeline.run(recipe, img, seed=5).image.rgb
    b = pipeline.run(recipe, img, seed=5).image.rgb
    c = pipeline.run(recipe, img, seed=6).image.rgb
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_region_full_output_leaves_everything_outside_untouched():
    img = _img(120, 160, seed=2)
    recipe = pipeline.build("lite", scale=1.0)
    r = pipeline.run(recipe, img, seed=3, region=pipeline.Region(40, 30, 50, 40))
    out = r.image.rgb
    # outside region + context + feather nothing changes, bit for bit
    far = np.ones(out.shape[:2], bool)
    far[max(0, 30 - 64) : 70 + 64, max(0, 40 - 64) : 90 + 64] = False
    assert np.array_equal(out[far], img.rgb[far])
    # inside the region the result is the processed one
    assert not np.allclose(out[40:60, 50:80], img.rgb[40:60, 50:80])


def test_layer_output_composited_over_the_source_equals_full_output():
    img = _img(120, 160, seed=4)
    recipe = pipeline.build("lite", scale=2.0)
    region = pipeline.Region(10, 20, 60, 50)
    full = pipeline.run(recipe, img, seed=9, region=region, output="full").image
    layer = pipeline.run(recipe, img, seed=9, region=region, output="layer")
    assert layer.image.mode == "RGBA"
    assert layer.canvas_size == (320, 240)
    ox, oy = layer.offset
    # the processed crop is the region padded by the recipe's context, clipped to the image
    assert (ox, oy) == (0, 0) and layer.image.width == round((10 + 60 + 64) * 2)
    base = images.resize(img, (240, 320)).rgb.copy()
    a = layer.image.alpha[..., None]
    h, w = layer.image.height, layer.image.width
    base[oy : oy + h, ox : ox + w] = base[oy : oy + h, ox : ox + w] + (layer.image.rgb - base[oy : oy + h, ox : ox + w]) * a
    np.testing.assert_allclose(base, full.rgb, atol=1e-6)
    # alpha is 1 inside the region, 0 at the crop's inner edges, soft in between
    assert layer.image.alpha[(20 + 25) * 2, (10 + 30) * 2] == 1.0
    assert layer.image.alpha[-1].max() == 0.0 and layer.image.alpha[:, -1].max() == 0.0


def test_soft_mask_limits_the_change():
    img = _img(100, 100, seed=5)
    mask = np.zeros((100, 100), np.float32)
    mask[30:70, 30:70] = 1.0
    r = pipeline.run(pipeline.build("lite", scale=1.0), img, seed=1, mask=mask)
    assert np.array_equal(r.image.rgb[:5], img.rgb[:5])
    assert not np.array_equal(r.image.rgb[45:55, 45:55], img.rgb[45:55, 45:55])


def test_region_off_the_canvas_edge_is_clipped_and_empty_inputs_refused():
    img = _img(64, 64)
    recipe = pipeline.build("lite", scale=1.0)
    r = pipeline.run(pipeline.build("lite", scale=1.0, overrides={"context": "8"}), img,
                     region=pipeline.Region(40, 40, 100, 100), output="layer")
    assert r.offset == (32, 32) and r.image.size == (32, 32)  # clipped to 40..64, padded by 8
    assert r.image.alpha[-1, -1] > 0.99  # no fade where the crop meets the image border
    with pytest.raises(InvalidParameter, match="outside"):
        pipeline.run(recipe, img, region=pipeline.Region(100, 100, 10, 10))
    with pytest.raises(InvalidParameter, match="empty"):
        pipeline.run(recipe, img, region=pipeline.Region(0, 0, 0, 10))
    with pytest.raises(InvalidParameter, match="empty"):
        pipeline.run(recipe, img, mask=np.zeros((64, 64), np.float32))
    with pytest.raises(InvalidParameter, match="mask is"):
        pipeline.run(recipe, img, mask=np.zeros((10, 64), np.float32))


def test_alpha_is_carried_through_and_16_bit_stays_16_bit():
    img = _img(40, 50, channels=4, depth=16, seed=7)
    r = pipeline.run(pipeline.build("lite", scale=1.0), img, seed=1)
    assert r.image.bit_depth == 16 and r.image.mode == "RGBA"
    np.testing.assert_array_equal(images.to_array(r.image)[..., 3], images.to_array(img)[..., 3])


def test_progress_is_ordered_and_ends_at_one():
    events = []
    pipeline.run(pipeline.build("lite"), _img(), seed=1, progress=events.append)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and all(f < 1.0 for f in fractions[:-1])
    stages = [e.stage for e in events if e.message.endswith("started")]
    assert stages == ["resample", "skin_texture", "grain"]
    assert isinstance(events[0], pipeline.Progress)


def test_cancel_stops_at_the_next_check():
    token = pipeline.CancelToken()
    seen = []

    def progress(p):
        seen.append(p.stage)
        if p.stage == "skin_texture":
            token.cancel()

    with pytest.raises(Cancelled):
        pipeline.run(pipeline.build("lite"), _img(), seed=1, progress=progress, cancel=token)
    assert "grain" not in seen


def test_checkpoint_hook_runs_at_every_check():
    calls = []
    token = pipeline.CancelToken(checkpoint=lambda: calls.append(threading.current_thread().name))
    pipeline.run(pipeline.build("lite"), _img(), seed=1, cancel=token)
    assert len(calls) >= 6  # between stages and inside each of them


def test_missing_weights_name_every_file_and_suggest_lite(tmp_path):
    recipe = pipeline.build("lite", {"skin_texture.strength": "0.01"})
    from dataclasses import replace

    from pipeline.recipes import StageSpec

    recipe = replace(recipe, stages=recipe.stages + (StageSpec("detail", "upscale_model", params={"model": "skin_detail"}),))
    config = pipeline.Config(comfy_models=(tmp_path,))
    with pytest.raises(MissingWeights) as e:
        pipeline.run(recipe, _img(), config=config)
    assert str(e.value).splitlines() == [
        "Missing weights: preset 'lite' cannot run without 1 model file (the 'lite' preset needs none):",
        "  - skin_detail: upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth (20.1 MB)"]
    assert any(str(tmp_path / "upscale_models") in p for p in e.value.looked)


def test_optional_stage_without_weights_is_skipped_and_said(tmp_path):
    from dataclasses import replace

    from pipeline.recipes import StageSpec

    recipe = pipeline.build("lite")
    recipe = replace(recipe, stages=(StageSpec("detail", "upscale_model", optional=True),) + recipe.stages)
    r = pipeline.run(recipe, _img(), config=pipeline.Config(comfy_models=(tmp_path,)))
    assert any("detail: skipped" in m for m in r.messages)


def test_unknown_stage_kind_and_bad_parameters_fail_before_work():
    from dataclasses import replace

    from pipeline.recipes import StageSpec

    recipe = pipeline.build("lite")
    with pytest.raises(StageUnavailable, match="nope"):
        pipeline.run(replace(recipe, stages=(StageSpec("x", "nope"),)), _img())
    with pytest.raises(InvalidParameter, match="no parameter 'colour'"):
        pipeline.run(pipeline.build("lite", {"grain.colour": "1"}), _img())
    with pytest.raises(InvalidParameter, match="between 0 and 0.5"):
        pipeline.run(pipeline.build("lite", {"grain.strength": "3"}), _img())
    with pytest.raises(InvalidParameter, match="number"):
        pipeline.run(pipeline.build("lite", {"grain.strength": "lots"}), _img())


def test_output_size_limit():
    with pytest.raises(pipeline.ImageTooLarge, match="scale"):
        pipeline.run(pipeline.build("lite", scale=4), _img(64, 64), config=pipeline.Config(max_output_pixels=10_000))


def test_rng_image_helper_is_deterministic():
    assert np.array_equal(rng_image(4, 4, 1), rng_image(4, 4, 1))
