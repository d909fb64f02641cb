"""The daemon runs real jobs: results equal a direct pipeline.run, big images survive bit-exactly,
progress arrives in order, cancel stops within one step, editor jobs overtake batch jobs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pipeline
from daemon.jobs.executor import ProgressPublisher
from pipeline import images
from proto.client import Client, EventKind, JobFailed, Rejected

from ._daemon_helpers import TOKEN, client, raw_image, request, result_array, start
from .conftest import wait_for


def _direct(preset: str, arr: np.ndarray, seed: int, **kw) -> np.ndarray:
    image = images.from_array(arr)
    r = pipeline.run(pipeline.build(preset), image, seed=seed, device="cpu", **kw)
    return images.to_array(r.image)


def test_round_trip_equals_direct_run(daemon, portrait):
    arr = images.to_array(portrait)
    with client(daemon) as c:
        res = c.run(request(arr, preset="lite", seed=11, output="full", client_name="test"))
    assert (res.width, res.height, res.channels, res.bit_depth) == (1024, 1024, 3, 8)
    assert res.seed == 11 and res.layer_name == "Dermis (lite, 11)" and res.preset == "lite"
    assert (res.offset_x, res.offset_y, res.canvas_width, res.canvas_height) == (0, 0, 1024, 1024)
    assert np.array_equal(result_array(res), _direct("lite", arr, 11))


def test_region_and_mask_layer_equals_direct_run(daemon):
    arr = raw_image(90, 120, 3, seed=1)
    mask = np.zeros((90, 120), np.uint8)
    mask[20:60, 30:90] = 200
    with client(daemon) as c:
        res = c.run(request(arr, preset="lite", seed=3, region=(25, 15, 70, 50), mask=mask.tobytes()))
    direct = pipeline.run(pipeline.build("lite"), images.from_array(arr), seed=3, device="cpu",
                          region=pipeline.Region(25, 15, 70, 50), mask=images.from_array(mask).rgb[..., 0],
                          output="layer")
    assert res.channels == 4  # layer mode: RGBA with the feathered selection as alpha
    assert (res.offset_x, res.offset_y) == direct.offset
    assert (res.canvas_width, res.canvas_height) == direct.canvas_size == (240, 180)
    assert np.array_equal(result_array(res), images.to_array(direct.image))


@pytest.mark.slow
def test_8000x6000_16bit_rgba_round_trips_bit_exactly(daemon):
    arr = raw_image(6000, 8000, 4, depth=16, seed=5)
    with client(daemon) as c:
        res = c.run(request(arr, preset="identity", seed=1, output="full"))
        assert (res.width, res.height, res.channels, res.bit_depth) == (8000, 6000, 4, 16)
        assert np.array_equal(result_array(res), arr)
        del res
    del arr


def test_progress_events_in_order_ending_with_result(daemon, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    events = []
    with client(daemon) as c:
        res = c.run(request(raw_image(96, 96, seed=2), preset="tiles", seed=1), on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[:3] == [EventKind.queued, EventKind.started, EventKind.stage]
    assert kinds[-1] is EventKind.done and events[-1].result is res
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    progress = [e for e in events if e.kind is EventKind.progress]
    assert len(progress) >= 9  # 96 px in 32 px tiles with overlap: every tile reports
    assert [p.step for p in progress] == list(range(1, len(progress) + 1))
    assert all(p.steps == len(progress) and p.stage == "upscale" for p in progress)
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1


def test_watch_resumes_after_a_sequence_number(daemon):
    with client(daemon) as c:
        job_id = c.submit(request(raw_image(40, 40), preset="lite", seed=2))
        first = list(c.watch(job_id))
        assert first[-1].kind is EventKind.done
        middle = first[len(first) // 2].seq
        again = list(c.watch(job_id, after_seq=middle))
        assert [e.seq for e in again] == [e.seq for e in first if e.seq > middle]
        assert again[-1].result.pixels == first[-1].result.pixels
        assert c.fetch_result(job_id).pixels == first[-1].result.pixels


def test_same_job_id_is_idempotent_and_a_different_request_is_refused(daemon):
    arr = raw_image(32, 32, seed=3)
    with client(daemon) as c:
        a = c.submit(request(arr, preset="lite", seed=1, job_id="retry-1"))
        b = c.submit(request(arr, preset="lite", seed=1, job_id="retry-1"))
        assert a == b == "retry-1"
        assert [j.job_id for j in c.list_jobs(include_finished=True)].count("retry-1") == 1
        with pytest.raises(Rejected) as e:
            c.submit(request(arr, preset="lite", seed=2, job_id="retry-1"))
        assert e.value.code == "already_exists"


def test_cancel_stops_within_one_step_and_the_next_job_runs(daemon, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    with client(daemon) as c:
        long_id = c.submit(request(raw_image(256, 256, seed=4), preset="tiles", seed=1))
        next_id = c.submit(request(raw_image(48, 48, seed=5), preset="lite", seed=1))
        seen = []
        for ev in c.watch(long_id):
            seen.append(ev)
            if ev.kind is EventKind.progress and ev.step == 2:
                c.cancel(long_id)
        assert seen[-1].kind is EventKind.cancelled and seen[-1].message == "The job was cancelled."
        job = daemon.queue.get(long_id)
        assert job.state.value == "cancelled" and job.cancel_seq is not None
        after = [e for e in seen if e.kind is EventKind.progress and e.seq > job.cancel_seq]
        assert len(after) <= 1, f"{len(after)} steps ran after the cancel"
        assert max(e.step for e in seen if e.kind is EventKind.progress) < 60  # of ~100 tiles
        assert c.fetch_result(next_id).width == 96


def test_cancel_a_queued_job_ends_it_at_once(daemon):
    with client(daemon) as c:
        first = c.submit(request(raw_image(256, 256, seed=6), preset="tiles", seed=1, priority="batch"))
        queued = c.submit(request(raw_image(32, 32), preset="lite", seed=1, priority="batch"))
        c.cancel(queued)
        events = list(c.watch(queued))
        assert events[-1].kind is EventKind.cancelled
        assert EventKind.started not in [e.kind for e in events]
        c.cancel(first)


def test_editor_job_overtakes_a_running_batch_job(daemon, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    batch_arr = raw_image(256, 256, seed=7)
    with client(daemon) as c:
        batch_id = c.submit(request(batch_arr, preset="tiles", seed=2, priority="batch", client_name="watch",
                                    output="full"))
        waiting_batch = c.submit(request(raw_image(32, 32), preset="lite", seed=1, priority="batch"))
        for ev in c.watch(batch_id):
            if ev.kind is EventKind.progress:
                break
        editor_id = c.submit(request(raw_image(48, 48), preset="lite", seed=1, priority="editor",
                                     client_name="krita"))
        editor = c.fetch_result(editor_id)
        batch_events = list(c.watch(batch_id))
        waiting_events = list(c.watch(waiting_batch))
    batch, ed = daemon.queue.get(batch_id), daemon.queue.get(editor_id)
    assert ed.finished_at < batch.finished_at, "the editor job finished first"
    texts = [e.message for e in batch_events if e.kind is EventKind.message]
    assert any(t.startswith("paused") for t in texts) and "resumed" in texts
    # the waiting batch job was overtaken too: its position went from 0 to 1
    positions = [e.position for e in waiting_events if e.kind is EventKind.queued]
    assert positions[:2] == [0, 1]
    # yielding at a step boundary does not change the batch job's result
    assert np.array_equal(result_array(batch_events[-1].result), _direct("tiles", batch_arr, 2))
    assert editor.width == 96
    with client(daemon) as c:
        counts = {cc.client_name: cc for cc in c.job_counts()}
    assert counts["watch"].done == 1 and counts["krita"].done == 1


def test_twenty_concurrent_clients_all_get_their_result(daemon):
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with client(daemon) as c:
                results[i] = c.run(request(raw_image(24, 24, seed=i), preset="lite", seed=i,
                                           client_name=f"c{i}"))
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(results) == list(range(20))
    assert all(r.seed == i and r.width == 48 for i, r in results.items())
    assert len({r.pixels for r in results.values()}) == 20


def test_full_queue_is_refused_with_resource_exhausted(short_tmp, test_presets):
    d = start(short_tmp, max_queue=2)
    try:
        with client(d) as c:
            running = c.submit(request(raw_image(256, 256), preset="tiles", seed=1, priority="batch"))
            wait_for(lambda: d.queue.get(running).state.value == "running", 30, "the batch job to start")
            ids = [c.submit(request(raw_image(16, 16), preset="lite", priority="batch")) for _ in range(2)]
            with pytest.raises(Rejected) as e:
                c.submit(request(raw_image(16, 16), preset="lite"))
            assert e.value.code == "queue_full" and "queue is full" in str(e.value)
            for job_id in [running, *ids]:
                c.cancel(job_id)
            assert c.info().queue_length <= 1
    finally:
        d.stop(grace=5.0)


def test_a_job_that_fails_while_running_ends_with_an_error_event(daemon):
    empty_mask = bytes(32 * 32)
    with client(daemon) as c:
        with pytest.raises(JobFailed) as e:
            c.run(request(raw_image(32, 32), preset="lite", mask=empty_mask))
        assert e.value.code == "invalid_parameter" and "mask is empty" in str(e.value)
        assert c.run(request(raw_image(32, 32), preset="lite")).width == 64  # still serving


def test_in_process_batch_jobs_as_the_watch_folder_submits_them(daemon, portrait_path):
    from daemon.jobs.queue import JobSpec, Priority

    spec = JobSpec(recipe=pipeline.build("lite", scale=1.0), image=lambda: images.load(portrait_path),
                   seed=5, priority=Priority.BATCH, client_name="watch")
    job, duplicate = daemon.queue.submit(spec)
    assert not duplicate and job.wait(120) and job.state.value == "done"
    assert isinstance(job.result, pipeline.RunResult) and job.result.image.size == (512, 512)
    direct = pipeline.run(pipeline.build("lite", scale=1.0), images.load(portrait_path), seed=5, device="cpu")
    assert np.array_equal(job.result.image.rgb, direct.image.rgb)
    assert [e.kind for e in job.events_after(0)][-1] is EventKind.done
    with client(daemon) as c:
        counts = {cc.client_name: cc for cc in c.job_counts()}  # counts are over every client
        assert counts["watch"].done == 1
        assert c.list_jobs(include_finished=True) == []  # the folder's job is not this client's
    with Client(daemon.address, TOKEN, admin=True) as admin:  # `dermis status` sees every job
        listed = admin.list_jobs(include_finished=True)
        assert listed[0].job_id == job.id and listed[0].priority == "batch" and listed[0].state == "done"


def test_previews_travel_as_small_rgb8_and_only_the_newest_is_kept(test_presets):
    from daemon.jobs.queue import JobQueue, JobSpec
    from daemon.server import wire
    from proto import messages
    from proto.dermis.v1 import dermis_pb2 as pb

    job, _ = JobQueue().submit(JobSpec(recipe=pipeline.build("lite"), image=images.from_array(raw_image(8, 8)),
                                       seed=1))
    now = [0.0]
    publish = ProgressPublisher(job, clock=lambda: now[0])
    interval = ProgressPublisher.PREVIEW_INTERVAL
    # the third comes too soon after the second and is dropped; a fourth channel is never sent
    for step, (at, value) in enumerate(((100.0, 40), (100.0 + interval, 80), (100.1 + interval, 7)), 1):
        now[0] = at
        publish(pipeline.Progress("refine", step, 3, fraction=0.5, preview=np.full((6, 10, 4), value, np.uint8)))
    previews = [e for e in job.events_after(0) if e.kind is EventKind.preview]
    assert len(previews) == 1 and previews[0].preview.pixels == bytes([80]) * 180  # the older one was dropped
    msg = pb.JobEvent.FromString(wire.event_pb(previews[0]).SerializeToString())
    event = messages.event(msg, [])  # the client reads back the event type the daemon logged
    assert (event.kind, event.job_id, event.seq, event.preview) == (
        EventKind.preview, job.id, previews[0].seq, previews[0].preview)
    assert (event.preview.width, event.preview.height) == (10, 6)
