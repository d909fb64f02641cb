"""Jobs on a real Ray cluster (three raylets on loopback: a head and two worker nodes): results equal
a local run pixel for pixel, two workers run two jobs at once, progress arrives in order, cancel and
editor priority reach remote jobs at their next boundary, `dermis status` lists the workers."""

from __future__ import annotations

import time

import numpy as np
import pytest

import pipeline
from daemon.jobs.executor import ProgressPublisher
from pipeline import images
from proto.events import EventKind

from ._cluster_helpers import cluster_daemon, journal_run_intervals, local_run, overlapping
from ._daemon_helpers import TOKEN, client, raw_image, request, result_array
from .conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def daemon(ray_cluster):
    with cluster_daemon(ray_cluster.address, workers=2) as d:  # workers = 0 would grow onto nodes tests add
        yield d


def test_round_trip_equals_a_local_run_pixel_for_pixel(daemon, portrait):
    arr = images.to_array(portrait)
    with client(daemon) as c:
        res = c.run(request(arr, preset="lite", seed=11, output="full", client_name="test"))
    assert (res.width, res.height, res.seed, res.preset) == (1024, 1024, 11, "lite")
    got, want = result_array(res), local_run("lite", arr, 11)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, local_run("lite", arr, 12)), "negative control: another seed differs"


def test_a_detail_layer_job_returns_the_detail_layer(daemon):
    arr = raw_image(128, 128, seed=5)
    with client(daemon) as c:
        res = c.run(request(arr, preset="lite", seed=3, output="full", content="detail", detail_sigma=4.0))
    got = result_array(res)
    assert np.array_equal(got, local_run("lite", arr, 3, content="detail", detail_sigma=4.0))
    assert not np.array_equal(got, local_run("lite", arr, 3)), "negative control: the refined pixels differ"


def test_two_workers_run_two_jobs_at_once_on_two_nodes(daemon, test_presets):
    with client(daemon) as c:
        ids = [c.submit(request(raw_image(160, 160, seed=i), preset="tiles", seed=i, priority="batch"))
               for i in range(2)]
        jobs = [daemon.queue.get(i) for i in ids]
        wait_for(lambda: all(j.state.value == "running" for j in jobs) or all(j.finished for j in jobs),
                 60, "both jobs to run")
        both_running = all(j.state.value == "running" for j in jobs)
        for i in ids:
            assert c.fetch_result(i).width == 160
    # read once both ended: a job is "running" as soon as a dispatch thread takes it, a moment before
    # that thread has decoded its image and said where it runs
    hosts = {e.message for j in jobs for e in j.events_after(0) if e.message.startswith("running on")}
    assert both_running, "the second job waited for the first"
    assert len(hosts) == 2 and {h.split()[3] for h in hosts} == {"worker-1", "worker-2"}, hosts
    starts = [j.started for j in jobs]
    ends = [j.finished_at for j in jobs]
    assert max(starts) < min(ends), "the runs overlapped in time"


def test_progress_events_in_order_ending_with_the_result(daemon, test_presets, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    events = []
    arr = raw_image(96, 96, seed=2)
    with client(daemon) as c:
        res = c.run(request(arr, preset="tiles", seed=1, output="full"), on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[:2] == [EventKind.queued, EventKind.started] and kinds[-1] is EventKind.done
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))
    progress = [e for e in events if e.kind is EventKind.progress]
    assert len(progress) >= 9 and [p.step for p in progress] == list(range(1, len(progress) + 1))
    assert np.array_equal(result_array(res), local_run("tiles", arr, 1))


def test_cancel_reaches_a_running_remote_job_at_its_next_step(daemon, test_presets, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    with client(daemon) as c:
        long_id = c.submit(request(raw_image(256, 256, seed=4), preset="tiles", seed=1))
        seen = []
        for ev in c.watch(long_id):
            seen.append(ev)
            if ev.kind is EventKind.progress and ev.step == 2:
                c.cancel(long_id)
        assert seen[-1].kind is EventKind.cancelled
        job = daemon.queue.get(long_id)
        assert job.cancel_seq is not None
        after = [e for e in seen if e.kind is EventKind.progress and e.seq > job.cancel_seq]
        # the worker stops at the first tile boundary after the cancel reaches it; what the driver still
        # receives after cancel_seq is that plus the tiles already streamed and those done while the
        # cancel travelled (monitor poll 50 ms, one actor call) at ~10 ms a tile: bounded, of 100
        assert len(after) <= 30, f"{len(after)} steps ran after the cancel"
        assert max(e.step for e in seen if e.kind is EventKind.progress) < 60
        assert c.run(request(raw_image(32, 32), preset="lite", seed=1)).width == 64  # the worker is free again


def test_an_editor_job_overtakes_batch_jobs_across_the_cluster(daemon, test_presets, monkeypatch):
    monkeypatch.setattr(ProgressPublisher, "MIN_INTERVAL", 0.0)
    arrs = [raw_image(448, 448, seed=7 + i) for i in range(2)]  # ~360 tiles each: seconds of work
    with client(daemon) as c:
        batch_ids = [c.submit(request(a, preset="tiles", seed=2, priority="batch", client_name="watch",
                                    output="full"))
                     for a in arrs]
        batches = [daemon.queue.get(i) for i in batch_ids]
        wait_for(lambda: all(j.fraction > 0 for j in batches), 60, "both batch jobs to make progress")
        assert not any(j.finished for j in batches), "a batch job ended before the editor job came"
        t0 = time.monotonic()
        editor_id = c.submit(request(raw_image(48, 48), preset="lite", seed=1, priority="editor",
                                     client_name="krita"))
        editor = c.fetch_result(editor_id)
        editor_s = time.monotonic() - t0
        results = [c.fetch_result(i) for i in batch_ids]
    ed = daemon.queue.get(editor_id)
    assert editor.width == 96
    assert all(ed.finished_at < b.finished_at for b in batches), "the editor job finished first"
    yielded = [i for i, b in enumerate(batches) if any(
        "editor job needed a cluster worker" in e.message for e in b.events_after(0) if e.kind is EventKind.message)]
    assert len(yielded) == 1, "exactly one batch job gave its worker up"
    assert editor_s < 30
    i = yielded[0]  # restarted from the beginning, it gives the same result as a run of its own
    assert np.array_equal(result_array(results[i]), local_run("tiles", arrs[i], 2))


def test_status_lists_both_workers(daemon, capsys, monkeypatch):
    from daemon.cli.entry import main

    monkeypatch.setenv("DERMIS_TOKEN", TOKEN)
    with client(daemon) as c:
        info = c.info()
    assert [w.name for w in info.workers] == ["worker-1", "worker-2"]
    assert all(w.device.startswith("CPU") and "127.0.0.1" in w.host and not w.removed for w in info.workers)
    assert main(["status", "--server", daemon.address]) == 0
    out = capsys.readouterr().out
    assert "cluster workers (2 of 2 in the pool)" in out
    assert out.count("127.0.0.1") >= 2


def _watch_batch(inbox, n: int, size: int = 128) -> dict[str, bytes]:
    from ._watch_helpers import png_bytes

    inbox.mkdir(parents=True)
    return {f"w{i:02d}.png": png_bytes(100 + i, size=size) for i in range(n)}


def test_a_daemon_watch_folder_keeps_one_job_per_worker_in_flight(daemon, test_presets, tmp_path):
    from daemon.watch.folder import find_journal
    from daemon.watch.service import WatchService
    from daemon.watch.settings import base_settings

    from ._watch_helpers import assert_accounted, expected_output

    def run_folder(name: str, capacity, n: int) -> tuple[list, dict[str, bytes], object]:
        inbox, out = tmp_path / name / "in", tmp_path / name / "out"
        good = _watch_batch(inbox, n)
        # the daemon's own [[watch]] wiring, on its queue, with the cluster executor's capacity
        config = pipeline.Config(raw={"watch": [{"in": str(inbox), "out": str(out), "preset": "tiles",
                                                 "stable_s": 0.2, "rescan_s": 1.0, "give_up_s": 1.0}]})
        service = WatchService.from_config(config, daemon.queue, capacity=capacity)
        service.start()
        try:
            for fname, data in good.items():
                (inbox / fname).write_bytes(data)
            wait_for(lambda: service.counts()[0]["done"] == n and service.counts()[0]["running"] == 0, 120,
                     f"the folder's {n} files")
        finally:
            service.stop(timeout=30)
        settings = base_settings("tiles")
        assert_accounted(inbox, out, good, expected={f: expected_output(d, settings) for f, d in good.items()})
        journal = find_journal(inbox)
        assert journal is not None
        return journal_run_intervals(journal), good, inbox

    assert daemon.executor.capacity == 2
    first = max((j.number for j in daemon.queue.jobs(include_finished=True)), default=0)
    intervals, good, _ = run_folder("two", lambda: daemon.executor.capacity, 6)
    assert len(intervals) == len(good)
    assert overlapping(intervals), f"no two files of the folder ran at once: {intervals}"
    jobs = [j for j in daemon.queue.jobs(include_finished=True) if j.number > first and j.spec.client_name == "watch"]
    hosts = {e.message.split()[3] for j in jobs for e in j.events_after(0) if e.message.startswith("running on")}
    assert hosts == {"worker-1", "worker-2"}, hosts
    assert any(max(a.started, b.started) < min(a.finished_at, b.finished_at)
               for i, a in enumerate(jobs) for b in jobs[i + 1:]), "the daemon's jobs overlapped too"
    # negative control: the same folder kept to one job in flight never overlaps (one worker idles)
    intervals, _, _ = run_folder("one", lambda: 1, 3)
    assert len(intervals) == 3 and overlapping(intervals) == [], intervals


# two fresh worker nodes for standalone watchers of their own (the node faults: test_cluster_faults.py)
def test_dermis_watch_ray_runs_two_files_at_once_and_a_kill_loses_none(ray_cluster, daemon, test_presets, tmp_path):
    import os
    import sqlite3
    import subprocess
    import sys

    from daemon.cli.entry import main
    from daemon.watch.folder import find_journal
    from daemon.watch.settings import base_settings

    from ._cluster_helpers import RESOURCE
    from ._watch_helpers import assert_accounted, expected_output, journal_rows
    from .conftest import REPO

    for _ in range(2):
        ray_cluster.add_worker_node()
    inbox, out = tmp_path / "in", tmp_path / "out"
    good = _watch_batch(inbox, 6, size=256)
    for name, data in good.items():
        (inbox / name).write_bytes(data)
    (tmp_path / "dermis.toml").write_text(f'[cluster]\nresource = "{RESOURCE}"\n')
    args = ["watch", str(inbox), "--config", str(tmp_path / "dermis.toml"), "--out", str(out), "--preset",
            "tiles", "--ray", ray_cluster.address, "--workers", "2", "--stable", "0.2", "--rescan", "1"]

    # a watcher process killed (-9) while it runs two files at once: the next one runs each again, once
    proc = subprocess.Popen([sys.executable, "-m", "daemon", *args], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def two_running() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the watcher exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            if find_journal(inbox) is None:
                return False
            try:
                return sum(1 for r in journal_rows(inbox) if r[1] == "running") == 2
            except sqlite3.OperationalError:  # the watcher has created the file, not yet its tables
                return False
        wait_for(two_running, 120, "two files running at once in the first watcher")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    killed = {r[0] for r in journal_rows(inbox) if r[1] == "running"}

    assert main([*args, "--once"]) == 0  # in this process; Ray frees the dead watcher's workers first
    settings = base_settings("tiles")
    assert_accounted(inbox, out, good, expected={f: expected_output(d, settings) for f, d in good.items()})
    rows = {r[0]: r for r in journal_rows(inbox)}
    assert len(killed) == 2 and all(rows[n][2] == 2 for n in killed), rows  # the killed run, then one more
    journal = find_journal(inbox)
    assert journal is not None
    intervals = journal_run_intervals(journal)
    assert len(intervals) == 6 and overlapping(intervals), intervals
