"""Model residency (LRU under a budget, with real spandrel models) and the out-of-memory ladder.

A CPU cannot run out of device memory, so the ladder tests raise torch.OutOfMemoryError from the
attempt function: the ladder, the eviction and the executor's preemption are what is under test, and
they run for real (the real queue, executor, cache and pipeline.run everywhere else)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline
from daemon.errors import NeedsWholeDevice
from daemon.jobs.residency import Residency, one_tile_per_batch
from pipeline import images
from pipeline.models.cache import module_bytes
from pipeline.models.spandrel_loader import load_image_model
from proto.client import EventKind

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


def test_oom_ladder_empties_evicts_shrinks_the_batch_then_fails_clearly(test_presets):
    residency = Residency()
    residency.models.get("resident", lambda: torch.nn.Linear(8, 8))
    recipe = pipeline.build("tiles", {"upscale.batch": "4"})
    tried, notes = [], []

    def attempt(r):
        tried.append(r.stage("upscale").params["batch"])
        if len(tried) == 4:
            assert residency.loaded() == []  # the evict rung ran before this attempt
        _oom()

    with pytest.raises(pipeline.OutOfMemory) as e:
        residency.run(attempt, recipe, notify=notes.append)
    assert tried == ["4", "4", "4", 1]
    assert [n.split(": ")[1] for n in notes] == [
        "emptied the device memory cache, trying again", "unloaded the other models, trying again",
        "processing one tile at a time, trying again"]
    assert "even after emptying the memory cache" in str(e.value) and "Tried to allocate" in str(e.value)
    assert e.value.code == "out_of_memory"

    calls = []
    assert residency.run(lambda r: calls.append(r) or (_oom() if len(calls) < 2 else "ok"), recipe,
                         notify=notes.append) == "ok"
    with pytest.raises(NeedsWholeDevice):
        residency.run(_oom, recipe, notify=notes.append, nested=True)


def test_one_tile_per_batch_only_touches_batching_stages(test_presets):
    assert one_tile_per_batch(pipeline.build("lite")) is None
    assert one_tile_per_batch(pipeline.build("tiles")) is None  # already batch = 1
    smaller = one_tile_per_batch(pipeline.build("tiles", {"upscale.batch": "3"}))
    assert smaller.stage("upscale").params["batch"] == 1


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
