"""Model residency (LRU under a budget, with real spandrel models) and the out-of-memory ladder.

A CPU cannot run out of device memory, so the memory tests raise torch.OutOfMemoryError from inside the
stage (or from the run function, for the executor's preemption): the pipeline's memory policy, the
eviction and the preemption are what is under test, and they run for real (the real queue, executor,
cache and pipeline.run everywhere else)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline
from daemon.errors import NeedsWholeDevice
from pipeline import images
from pipeline.models.cache import module_bytes
from pipeline.models.spandrel_loader import load_image_model
from proto.client import EventKind, JobFailed

from ._daemon_helpers import client, raw_image, request, result_array, start, user_presets_dir

SKIN_PRESET = """
name = "skin"
scale = 1.0

[[stage]]
id = "skin"
kind = "upscale_model"
model = "{model}"
tile = 64
overlap = 8
"""


def test_models_stay_loaded_and_the_least_recently_used_goes_when_the_budget_is_full(
        short_tmp, test_presets, tiny_models):
    compact = tiny_models / "upscale_models" / "4x-tiny-Compact.pth"
    esrgan = tiny_models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
    (user_presets_dir() / "skin.toml").write_text(SKIN_PRESET.format(model=esrgan))
    sizes = [module_bytes(load_image_model(p, torch.device("cpu"), torch.float32)) for p in (compact, esrgan)]
    d = start(short_tmp, vram_budget=max(sizes) + 1)  # room for either model, not for both
    try:
        with client(d) as c:
            def loaded() -> list[str]:
                return [k for k in c.info().loaded_models]

            c.run(request(raw_image(64, 64), preset="tiles"))
            assert len(loaded()) == 1 and "Compact" in loaded()[0]
            c.run(request(raw_image(64, 64), preset="tiles"))  # loaded already: nothing evicted
            assert d.residency.models.evictions == 0
            c.run(request(raw_image(64, 64), preset="skin"))
            assert len(loaded()) == 1 and "SkinDiffDetail" in loaded()[0]
            c.run(request(raw_image(64, 64), preset="tiles"))
            assert "Compact" in loaded()[0] and d.residency.models.evictions == 2
    finally:
        d.stop(grace=5.0)


def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def test_a_job_short_of_memory_is_retried_by_the_pipeline_policy_with_fewer_tiles_per_call(daemon, monkeypatch):
    """The daemon runs pipeline.memory_policy like the CLI: the stage that ran out of memory runs again
    after the other cached models are unloaded, then with fewer tiles per call, and the result is the
    one a direct run with those settings gives."""
    from pipeline.stages import upscale_model

    real, batches = upscale_model._tiled, []

    def tiled(desc, rgb, tile, params, ctx):
        batches.append(params.batch)
        if params.batch > 1:
            _oom()
        return real(desc, rgb, tile, params, ctx)

    monkeypatch.setattr(upscale_model, "_tiled", tiled)
    daemon.residency.models.get("left over", lambda: torch.nn.Linear(8, 8))
    arr = raw_image(64, 64, seed=5)
    with client(daemon) as c:
        job = c.submit(request(arr, preset="tiles", seed=2, overrides={"upscale.batch": "3"}))
        events = list(c.watch(job))
    assert events[-1].kind is EventKind.done
    assert batches == [3, 3, 1]
    assert [e.message for e in events if "out of device memory" in e.message] == [
        "upscale: out of device memory, unloaded the other models",
        "upscale: out of device memory, trying again with 1 tile(s) per model call"]
    assert "left over" not in daemon.residency.models
    monkeypatch.setattr(upscale_model, "_tiled", real)
    direct = pipeline.run(pipeline.build("tiles", {"upscale.batch": "1"}), images.from_array(arr), seed=2,
                          device="cpu")
    assert np.array_equal(result_array(events[-1].result)[..., :3], images.to_array(direct.image)[..., :3])


def test_a_job_out_of_memory_at_every_setting_fails_with_one_clear_error(daemon, monkeypatch):
    from pipeline.stages import upscale_model

    monkeypatch.setattr(upscale_model, "_tiled", _oom)
    with client(daemon) as c, pytest.raises(JobFailed) as e:
        c.run(request(raw_image(64, 64), preset="tiles", seed=2,
                      overrides={"upscale.batch": "2", "upscale.tile": "512"}))
    assert e.value.code == "out_of_memory"
    text = str(e.value)
    assert "even after 1 tile(s) per model call, tile = 256 and tile = 128" in text
    assert "Tried to allocate" in text and "--" not in text


def test_the_executor_sees_out_of_memory_once_and_a_nested_job_asks_for_the_whole_device(test_presets):
    from daemon.jobs.residency import Residency

    residency, recipe = Residency(), pipeline.build("tiles")

    def final(r):
        raise pipeline.OutOfMemory("tiles ran out of device memory even after ...")

    with pytest.raises(pipeline.OutOfMemory, match="even after"):
        residency.run(final, recipe)
    with pytest.raises(pipeline.OutOfMemory, match="outside its stages"):
        residency.run(_oom, recipe)
    with pytest.raises(NeedsWholeDevice, match="even after"):
        residency.run(final, recipe, nested=True)
    assert residency.run(lambda r: "ok", recipe) == "ok"


def test_editor_job_short_of_memory_inside_a_paused_batch_job_gets_the_device(daemon):
    """The editor job runs nested at the batch job's step boundary and (simulated) runs out of memory
    there: the batch job unwinds and is queued again, the editor job runs alone, then the batch job
    runs again from the start and gives the same result as a direct run."""
    real_run = daemon.executor.run_fn

    def short_of_memory_when_nested(recipe, image, **kw):
        if recipe.preset == "lite" and len(daemon.executor._stack) > 1:
            _oom()
        return real_run(recipe, image, **kw)

    daemon.executor.run_fn = short_of_memory_when_nested
    batch_arr = raw_image(160, 160, seed=3)
    with client(daemon) as c:
        batch_id = c.submit(request(batch_arr, preset="tiles", seed=4, priority="batch", output="full"))
        for ev in c.watch(batch_id):
            if ev.kind is EventKind.progress:
                break
        editor_id = c.submit(request(raw_image(40, 40), preset="lite", seed=1))
        editor_events = list(c.watch(editor_id))
        batch_events = list(c.watch(batch_id))
    assert editor_events[-1].kind is EventKind.done
    assert any("runs again" in e.message for e in editor_events)
    assert [e.kind for e in batch_events].count(EventKind.started) == 2
    assert any("needed the whole device" in e.message for e in batch_events)
    assert daemon.queue.get(editor_id).finished_at < daemon.queue.get(batch_id).finished_at
    direct = pipeline.run(pipeline.build("tiles"), images.from_array(batch_arr), seed=4, device="cpu")
    assert np.array_equal(result_array(batch_events[-1].result), images.to_array(direct.image))
