"""FetchModels: the daemon downloads what a preset lacks as a job (progress events, cancel, resume),
on its own thread, and GetServerInfo carries the catalogue. A real in-process daemon over gRPC, the real
thin client, and the Hub stand-in (tests/hub_standin.py) reached through huggingface_hub."""

from __future__ import annotations

import pytest

import pipeline
from pipeline.models.catalogue import catalogue
from proto.client import EventKind, JobFailed

from ._daemon_helpers import client, start
from ._models_helpers import SDXL, SKIN, MiB, hidden_leftovers


@pytest.fixture
def served(hub, short_tmp, tmp_path):
    """A daemon whose models folder is a fresh ComfyUI tree (nothing shared with other tests)."""
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    d = start(short_tmp, pipeline=pipeline.Config(comfy_models=(models,), models_dir=tmp_path / "own"))
    yield d, models
    d.stop(grace=5.0)


def test_a_dry_run_says_what_would_be_fetched_and_which_licences_need_a_yes(served):
    d, models = served
    with client(d) as c:
        plan = c.plan_models("fetch-demo")
        info = c.info()
    assert [(f.role, f.action, f.path) for f in plan.downloads] == [
        ("skin_detail", "download", str(models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth")),
        ("sdxl", "download", str(models / "checkpoints" / "sd_xl_base_1.0_0.9vae.safetensors"))]
    assert plan.download_bytes == len(SKIN) + len(SDXL) and plan.folder == str(models) and plan.free_bytes > 0
    assert len(plan.licences_to_accept) == 1 and "CC-BY-NC-SA-4.0" in plan.licences_to_accept[0]
    assert d.queue.jobs(include_finished=True) == []  # nothing started
    assert "fetch-models" in info.capabilities
    assert [(f.role, f.variant) for f in info.catalogue] == [(f.role, f.variant) for f in catalogue().files]


def test_a_fetch_job_reports_each_file_and_the_preset_is_ready_after(served, hub):
    d, models = served
    with client(d) as c:
        with pytest.raises(JobFailed) as e:  # the licence was not accepted: nothing is fetched
            list(_outcome(c, c.fetch_models("fetch-demo", client_name="test")))
        assert e.value.code == "licence_not_accepted" and hub.served("cdn") == []
        job_id = c.fetch_models("fetch-demo", accept_licences=True, client_name="test")
        events = list(_outcome(c, job_id))
        info = c.info()
        jobs = c.list_jobs(include_finished=True)
    stages = [ev.stage for ev in events if ev.kind is EventKind.stage]
    assert stages == ["skin_detail", "sdxl"]
    fractions = [ev.fraction for ev in events if ev.kind is EventKind.progress]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    steps = [(ev.stage, ev.step, ev.steps) for ev in events if ev.kind is EventKind.progress]
    assert ("skin_detail", 4, 4) in steps and ("sdxl", 3, 3) in steps  # MiB, rounded up
    done = events[-1]
    assert done.kind is EventKind.done and any("sha256 (catalogue) checked" in m for m in done.result.messages)
    assert (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").read_bytes() == SKIN
    assert (models / "checkpoints" / "sd_xl_base_1.0_0.9vae.safetensors").read_bytes() == SDXL
    weights = {w.key: w.status for w in info.weights}
    assert weights["skin_detail"] == "found" and weights["sdxl"] == "found"
    assert [(j.kind, j.state, j.client_name) for j in jobs if j.job_id == job_id] == [("fetch_models", "done", "test")]


def test_cancel_stops_a_download_and_the_next_fetch_resumes_it(served, hub):
    d, models = served
    hub.throttle_s = 0.03  # ~2 MiB/s: the cancel lands in the middle of the first file
    part = models / "upscale_models" / ".1x-ITF-SkinDiffDetail-Lite-v1.pth.download.part"
    with client(d) as c:
        job_id = c.fetch_models("fetch-demo", accept_licences=True)
        for ev in c.watch(job_id):
            if ev.kind is EventKind.progress:
                c.cancel(job_id)
            if ev.kind is EventKind.cancelled:
                break
        else:
            pytest.fail("the fetch job did not end cancelled")
        kept = part.stat().st_size
        assert MiB <= kept < len(SKIN)
        assert not (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").exists()
        hub.throttle_s = 0.0
        list(_outcome(c, c.fetch_models("fetch-demo")))  # accepted once: remembered
    assert (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").read_bytes() == SKIN
    assert [r.range for r in hub.served("cdn") if r.range] == [f"bytes={kept}-"]
    assert hidden_leftovers(models) == []


def test_image_jobs_run_while_a_download_waits(served, hub):
    """The download has its own thread: a lite job finishes while the stand-in holds a file half-sent."""
    from ._daemon_helpers import raw_image, request

    d, _models = served
    hub.stall_after = MiB
    with client(d) as c:
        job_id = c.fetch_models("fetch-demo", accept_licences=True)
        result = c.run(request(raw_image(16, 16), preset="lite"))
        assert result.width == 32
        assert d.queue.get(job_id).state.value == "running"
        hub.release.set()
        list(_outcome(c, job_id))


def test_an_unknown_preset_is_refused_at_once(served):
    d, _models = served
    from proto.client import Rejected

    with client(d) as c, pytest.raises(Rejected) as e:
        c.fetch_models("no-such-preset")
    assert e.value.code == "invalid_parameter" and "neither a preset" in str(e.value)


def _outcome(c, job_id):
    """The job's events; raises JobFailed / JobCancelled as the client's run() does."""
    for ev in c.watch(job_id):
        yield ev
        if ev.kind is EventKind.error:
            raise JobFailed(ev.message, ev.error_code)
