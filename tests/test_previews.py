"""Preview schedule and the latent-to-RGB projection shared by the diffusion stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.previews import PreviewSchedule, latent_to_rgb


def test_four_previews_per_stage_spread_over_the_steps():
    s = PreviewSchedule(20, per_stage=4, min_interval=0.0)
    assert [k for k in range(1, 21) if s.due(k)] == [5, 10, 15]  # step 20: the result itself follows


def test_previews_are_at_least_min_interval_apart():
    now = [0.0]
    s = PreviewSchedule(8, per_stage=8, min_interval=1.0, clock=lambda: now[0])
    sent = []
    for k in range(1, 9):
        now[0] += 0.4
        if s.due(k):
            sent.append(k)
    assert sent == [1, 4, 7]  # 0.4 s per step: one preview every third step at most


def test_no_previews_when_turned_off_or_one_step():
    assert not any(PreviewSchedule(10, per_stage=0).due(k) for k in range(1, 11))
    assert not PreviewSchedule(1, min_interval=0.0).due(1)


def test_projection_shape_range_and_values():
    lat = torch.zeros(2, 4, 300, 200)
    lat[0, 0] = 1.0  # channel 0 -> pure red through the projection below
    f = [[1, -1, -1], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    out = latent_to_rgb(lat, f, max_side=256)
    assert out.dtype == np.uint8 and out.shape == (150, 100, 3)  # shrunk 2x: longer side 150 <= 256
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()
    neutral = latent_to_rgb(torch.zeros(1, 4, 8, 8), f)
    assert (neutral == 128).all()  # 0 in [-1, 1] is mid-grey


def test_projection_refuses_the_wrong_channel_count():
    with pytest.raises(ValueError, match="16 channels"):
        latent_to_rgb(torch.zeros(1, 16, 8, 8), [[0, 0, 0]] * 4)


# -------------------------------------------------------------------------- previews of a whole run


def test_a_run_previews_the_image_after_every_stage_but_the_last(portrait):
    """lite (resample, texture, grain): two previews, each placed where the layer goes; the first is
    the image after resample (at 1x: the input crop itself), shrunk."""
    import pipeline
    from pipeline import images
    from pipeline.previews import rgb_thumbnail

    arr = images.to_array(portrait, bit_depth=8)[:300, :400]
    seen = []
    res = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(arr), seed=1,
                       region=pipeline.Region(100, 80, 200, 150), output="layer", progress=seen.append)
    previews = [p for p in seen if p.preview is not None]
    assert [p.stage for p in previews] == ["resample", "skin_texture"]
    box = (*res.offset, res.image.width, res.image.height)
    assert all(p.area == box for p in previews)
    first = previews[0].preview
    assert first.dtype == np.uint8 and max(first.shape[:2]) <= 256
    x, y, w, h = box
    crop = images.from_array(arr).rgb[y:y + h, x:x + w]
    np.testing.assert_array_equal(first, rgb_thumbnail(crop))
    # nothing is computed for a caller that does not listen
    quiet = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(arr), seed=1,
                         region=pipeline.Region(100, 80, 200, 150), output="layer")
    np.testing.assert_array_equal(quiet.image.rgb, res.image.rgb)


def test_previews_capability_follows_the_presets(monkeypatch):
    """A preset previews when it has two or more enabled stages (or a stage that says it previews);
    the server advertises "previews" only when some preset does."""
    import pipeline
    from pipeline.previews import sends_previews
    from pipeline.recipes import Recipe, StageSpec

    assert sends_previews(pipeline.build("lite"))
    one = Recipe("one", "one", "", 1.0, (StageSpec("resample", "resample"),
                                         StageSpec("grain", "grain", enabled=False)))
    assert not sends_previews(one)

    from daemon.jobs.queue import JobQueue
    from daemon.jobs.residency import Residency
    from daemon.server import info

    def capabilities(table):
        monkeypatch.setattr(pipeline, "presets", lambda: table)
        reply = info.build(pipeline.Config(), (torch.device("cpu"), torch.float32), Residency(), JobQueue(), 8)
        return list(reply.capabilities), {p.name: p.previews for p in reply.presets}

    caps, per_preset = capabilities({"one": one})
    assert "previews" not in caps and per_preset == {"one": False}
    caps, per_preset = capabilities({"one": one, "lite": pipeline.build("lite")})
    assert "previews" in caps and per_preset == {"one": False, "lite": True}
