"""ComfyUI KSampler semantics of the flow-matching sampler: schedule length, executed steps, shift."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline import CancelToken
from pipeline.errors import InvalidParameter
from pipeline.models.flux import engine
from pipeline.samplers.flow_match import (
    comfy_sigmas,
    flux_time_shift,
    full_sigmas,
    noise_latents,
    sample_euler,
    schedule_length,
)

from ._flux_helpers import ConstantTransformer, LocalCodec, velocity


@pytest.mark.parametrize("steps,denoise,total", [(20, 0.30, 66), (20, 0.35, 57), (10, 0.30, 33)])
def test_comfy_step_parity(steps, denoise, total):
    assert schedule_length(steps, denoise) == total
    sigmas = comfy_sigmas(steps, denoise)
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0
    # the executed sigmas are the tail of the int(S/d)-step schedule, as KSampler.set_steps keeps them
    assert torch.equal(sigmas, full_sigmas(total)[-(steps + 1):])
    # fixed shift mu=1.15 applied before truncation: denoise 0.3 starts at ~58 % noise, not 30 %
    expected = flux_time_shift(1.15, torch.tensor(1 - (total - steps) / total))
    assert math.isclose(float(sigmas[0]), float(expected), abs_tol=2e-4)
    calls = []
    x = sample_euler(lambda x, s: calls.append(s) or torch.zeros_like(x), torch.zeros(1, 4), sigmas)
    assert len(calls) == steps and x.shape == (1, 4)


def test_start_noise_matches_the_reference_notes():
    # srpo_tiling.md: strength 0.30 -> 0.58, 0.35 -> 0.63, 0.40 -> 0.68, 0.50 -> 0.76 at mu 1.15
    for d, start in [(0.30, 0.58), (0.35, 0.63), (0.40, 0.68), (0.50, 0.76)]:
        assert abs(float(comfy_sigmas(20, d)[0]) - start) < 0.01


def test_full_denoise_starts_from_pure_noise_and_normal_scheduler_differs():
    simple = comfy_sigmas(8, 1.0)
    assert float(simple[0]) == 1.0 and len(simple) == 9
    normal = comfy_sigmas(8, 1.0, scheduler="normal")
    assert len(normal) == 9 and not torch.equal(simple, normal)
    assert torch.all(normal[:-1] > normal[1:])


def test_bad_schedules_are_refused():
    for steps, denoise in [(0, 0.3), (20, 0.0), (20, 1.5)]:
        with pytest.raises(InvalidParameter):
            comfy_sigmas(steps, denoise)
    with pytest.raises(InvalidParameter):
        full_sigmas(10, scheduler="karras")


def test_euler_with_constant_velocity_is_exact():
    sigmas = comfy_sigmas(6, 0.5)
    x0, noise = torch.rand(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    start = noise_latents(x0, noise, float(sigmas[0]))
    out = sample_euler(lambda x, s: noise - x0, start, sigmas)  # the true flow of this pair
    assert torch.allclose(out, x0, atol=1e-6)


def test_engine_runs_exactly_steps_transformer_calls_per_tile():
    model = ConstantTransformer(0.0)
    settings = engine.RefineSettings(steps=20, denoise=0.35, tile=256, overlap=128, tile_batch=8)

    out = engine.refine(torch.rand(1, 3, 384, 384), codec=LocalCodec(), velocity=velocity(model, settings),
                        settings=settings, generator=torch.Generator().manual_seed(0), cancel=CancelToken())
    plan = engine.frame_plan(384, 384, settings)
    assert len(plan) == 4 and model.calls == [4] * 20  # 20 executed steps, all 4 tiles in one batch
    assert out.shape == (1, 3, 384, 384)


def test_euler_reports_one_progress_shape_and_stops_on_the_token():
    import pipeline

    sigmas = comfy_sigmas(4, 0.5)
    token, seen, calls = CancelToken(), [], []

    def progress(p):
        seen.append(p)
        if p.step == 2:
            token.cancel()

    with pytest.raises(pipeline.Cancelled):
        sample_euler(lambda x, s: calls.append(s) or torch.zeros_like(x), torch.zeros(1, 4), sigmas,
                     progress=progress, cancel=token)
    assert seen == [pipeline.Progress("", 1, 4), pipeline.Progress("", 2, 4)] and len(calls) == 2
