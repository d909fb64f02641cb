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
