"""Faults on a real Ray cluster (raylets on loopback, as in test_cluster.py): a node killed mid-batch, a
worker that Ray restarts on a node that joins, model files that fail to load on one node (or on all),
losing every worker with and without local_fallback, and a cluster that cannot be reached at start.

Tests that need workers of their own add nodes offering a resource of their own (so only their daemon's
workers go there) and kill them when done; the module's daemon keeps two workers on the first two
nodes (its second test puts one back on a fresh node)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline import images
from proto.events import EventKind

from ._cluster_helpers import cluster_daemon, local_run
from ._daemon_helpers import (
    TILES_PRESET,
    TOKEN,
    client,
    raw_image,
    request,
    result_array,
    user_presets_dir,
)
from .conftest import REPO, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RESTART_BOUND_S = 60  # a worker is back in the pool this long after a node with a free unit joins


@pytest.fixture(scope="module")
def daemon(ray_cluster):
    with cluster_daemon(ray_cluster.address, workers=2) as d:  # workers = 0 would grow onto nodes tests add
        yield d


def _messages(job) -> list[str]:
    return [e.message for e in job.events_after(0) if e.kind is EventKind.message]


def _hosts(jobs) -> set[str]:
    """The workers the jobs ran on, from their "running on cluster worker-N (...)" messages."""
    return {m.split()[3] for j in jobs for m in _messages(j) if m.startswith("running on")}


def _status(d, capsys, monkeypatch) -> str:
    from daemon.cli.entry import main

    monkeypatch.setenv("DERMIS_TOKEN", TOKEN)
    capsys.readouterr()
    assert main(["status", "--server", d.address]) == 0
    return capsys.readouterr().out


def test_killing_a_node_mid_batch_leaves_one_outcome_per_file(daemon, ray_cluster, test_presets, tmp_path):
    from daemon.watch.service import QueueRunner
    from daemon.watch.settings import base_settings

    from ._watch_helpers import FAST, Watcher, assert_accounted, expected_output, png_bytes

    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    good = {f"p{i:02d}.png": png_bytes(i, size=128) for i in range(12)}
    # the folder keeps one job per live worker in flight, as a daemon [[watch]] folder on a cluster does
    runner = QueueRunner(daemon.queue, pipeline.Config(), lambda: daemon.executor.capacity)
    with Watcher(inbox, out, preset="tiles", options=FAST, runner=runner) as w:
        for name, data in good.items():
            (inbox / name).write_bytes(data)
        # the 4th job, once it has made progress: kill the node its worker runs on
        running = wait_for(lambda: next((j for j in daemon.queue.jobs() if j.state.value == "running" and
                                         j.number >= 4 and j.fraction > 0), None), 120, "a job mid-run")
        slot = next(s for s in daemon.executor.pool.slots if s.job == running.id)
        node = next(n for n in ray_cluster.nodes if n.node_id == slot.last["node"])
        ray_cluster.kill_node(node)
        w.wait_finished(12, timeout=180)
    texts = _messages(running)
    assert any("died; the job runs again on another worker (retry 1 of 2)" in t for t in texts), texts
    assert running.state.value == "done"
    assert slot.waiting.startswith("restarting: its node") and not slot.removed
    settings = base_settings("tiles")
    assert_accounted(inbox, out, good, expected={n: expected_output(d, settings) for n, d in good.items()})
    with client(daemon) as c:
        workers = c.info().workers
    assert len(workers) == 2 and [w.removed.startswith("restarting") for w in workers].count(True) == 1


# after the kill above: the killed node's worker waits for a node with a free unit
def test_a_worker_whose_node_died_restarts_on_a_node_that_joins(daemon, ray_cluster, test_presets, capsys,
                                                                 monkeypatch):
    slot = next(s for s in daemon.executor.pool.slots if s.waiting)
    time.sleep(2.0)  # nothing offers a free unit: it stays out of the pool
    assert slot.waiting and daemon.executor.capacity == 1
    assert "cluster workers (1 of 2 in the pool)" in _status(daemon, capsys, monkeypatch)
    ray_cluster.add_worker_node()
    wait_for(lambda: slot.alive, RESTART_BOUND_S, f"{slot.name} back in the pool")
    assert daemon.executor.capacity == 2
    out = _status(daemon, capsys, monkeypatch)
    assert "cluster workers (2 of 2 in the pool)" in out and "NOT IN THE POOL" not in out
    with client(daemon) as c:  # both workers run jobs, at once, the restarted one on the new node
        ids = [c.submit(request(raw_image(160, 160, seed=i), preset="tiles", seed=i, priority="batch", output="full"))
               for i in range(2)]
        arrs = {i: raw_image(160, 160, seed=n) for n, i in enumerate(ids)}
        for n, i in enumerate(ids):
            assert np.array_equal(result_array(c.fetch_result(i)), local_run("tiles", arrs[i], n))
    assert _hosts([daemon.queue.get(i) for i in ids]) == {"worker-1", "worker-2"}
    assert slot.last["node"] in {n.node_id for n in ray_cluster.nodes}


def test_with_workers_0_a_node_that_joins_gets_a_worker(ray_cluster, test_presets, capsys, monkeypatch):
    nodes = [ray_cluster.add_worker_node(resource="dermis_grow")]
    try:
        # workers = 0: one per free unit
        with cluster_daemon(ray_cluster.address, resource="dermis_grow", workers=0, start_timeout_s=60) as d:
            assert [s.name for s in d.executor.pool.live()] == ["worker-1"]
            time.sleep(3.0)  # negative control: no free unit, no new worker
            assert len(d.executor.pool.slots) == 1
            nodes.append(ray_cluster.add_worker_node(resource="dermis_grow"))
            wait_for(lambda: len(d.executor.pool.live()) == 2, RESTART_BOUND_S, "a worker on the new node")
            assert d.executor.pool.slots[1].last["node"] == nodes[1].node_id
            assert "cluster workers (2 of 2 in the pool)" in _status(d, capsys, monkeypatch)
            with client(d) as c:
                ids = [c.submit(request(raw_image(160, 160, seed=i), preset="tiles", seed=i, priority="batch"))
                       for i in range(2)]
                for i in ids:
                    assert c.fetch_result(i).width == 160
            assert _hosts([d.queue.get(i) for i in ids]) == {"worker-1", "worker-2"}
    finally:
        for n in nodes:
            ray_cluster.kill_node(n)


def _broken_models(tiny_models: Path, folder: Path) -> Path:
    """A models folder like tiny_models whose Compact model is cut in half (a damaged copy on one node)."""
    shutil.copytree(tiny_models / "upscale_models", folder / "upscale_models")
    model = folder / "upscale_models" / "4x-tiny-Compact.pth"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return model


def test_models_that_fail_to_load_take_their_worker_out_of_the_pool(ray_cluster, tiny_models, test_presets,
                                                                     tmp_path, capsys, monkeypatch):
    broken = _broken_models(tiny_models, tmp_path / "broken")
    # "tiles-node": the model by its place in a models folder, so each node finds its own copy
    for name, model in (("tiles-node", "upscale_models/4x-tiny-Compact.pth"), ("tiles-broken", broken)):
        (user_presets_dir() / f"{name}.toml").write_text(TILES_PRESET.format(name=name, model=model))
    # two nodes; the first one's copy of the model is damaged
    nodes = [ray_cluster.add_worker_node(env={"DERMIS_COMFY_MODELS": str(tmp_path / "broken")},
                                         resource="dermis_models"),
             ray_cluster.add_worker_node(resource="dermis_models")]
    try:
        with cluster_daemon(ray_cluster.address, resource="dermis_models", workers=2, start_timeout_s=60,
                            config=pipeline.Config(comfy_models=(tiny_models,))) as d:
            pool = d.executor.pool
            assert len(pool.live()) == 2
            with client(d) as c:
                # the same damaged file on every node: the job fails with the loader's error, no worker leaves
                arr = raw_image(96, 96, seed=1)
                job_id = c.submit(request(arr, preset="tiles-broken", seed=1))
                failed = wait_for(lambda: d.queue.get(job_id).finished and d.queue.get(job_id), 60, "the job")
                assert failed.state.value == "failed" and failed.error_code == "wrong_weights", failed.message
                assert "cannot be read as model weights" in failed.message
                assert "failed the same way on cluster workers" in failed.message
                assert len(pool.live()) == 2, [s.out for s in pool.slots]

                # damaged on one node only: its worker leaves the pool, the job runs again on the other one
                runs = []  # (job, image, seed)
                for attempt in range(3):  # two at once, long enough (~120 tiles) that each worker takes one
                    for i in range(2):
                        a = raw_image(256, 256, seed=10 + 2 * attempt + i)
                        job_id = c.submit(request(a, preset="tiles-node", seed=i, priority="batch", output="full"))
                        runs.append((d.queue.get(job_id), a, i))
                    wait_for(lambda: all(j.finished for j, _, _ in runs), 120, "the jobs")
                    if len(pool.live()) < 2:
                        break
                jobs = [j for j, _, _ in runs]
                assert all(j.state.value == "done" for j in jobs), [(j.state, j.message) for j in jobs]
                for j, a, seed in runs:  # the same as a local run with the undamaged file
                    assert np.array_equal(result_array(c.fetch_result(j.id)), local_run("tiles", a, seed))
                removed = [s for s in pool.slots if s.removed]
                assert len(removed) == 1 and pool.live() != removed, [(s.name, s.out) for s in pool.slots]
                assert removed[0].last["node"] == nodes[0].node_id, "the worker on the damaged node left"
                assert removed[0].removed.startswith("its models failed to load: ")
                assert f"{broken}: cannot be read as model weights" in removed[0].removed
                rerun = [j for j in jobs if any("Its models failed to load on cluster" in m for m in _messages(j))]
                assert len(rerun) == 1 and "(retry 1 of 2)" in _messages(rerun[0])[-2], _messages(rerun[0])
                out = _status(d, capsys, monkeypatch)
                assert "cluster workers (1 of 2 in the pool)" in out
                assert f"{removed[0].name} on" in out and "NOT IN THE POOL, removed: its models failed to load:" in out

                # an error of the job itself (an empty selection mask): the job fails, the worker stays
                bad = c.submit(request(raw_image(64, 64), preset="tiles-node", seed=1, mask=bytes(64 * 64)))
                job = wait_for(lambda: d.queue.get(bad).finished and d.queue.get(bad), 60, "the masked job")
                assert job.state.value == "failed" and "the selection mask is empty" in job.message
                assert len(pool.live()) == 1
                # and with one worker left, nothing to compare with: the job fails, the worker stays
                job_id = c.submit(request(arr, preset="tiles-broken", seed=1))
                job = wait_for(lambda: d.queue.get(job_id).finished and d.queue.get(job_id), 60, "the job")
                assert job.error_code == "wrong_weights" and "the only worker in the pool" in job.message
                assert len(pool.live()) == 1
            # the removed worker holds its unit, idle; when its node dies it is not restarted elsewhere
            assert not removed[0].killed
            ray_cluster.kill_node(nodes[0])
            wait_for(lambda: removed[0].killed, 30, "the removed worker's actor to be let go")
    finally:
        for n in nodes:
            if n in ray_cluster.nodes:
                ray_cluster.kill_node(n)


def test_losing_every_worker_fails_jobs_naming_the_cluster_until_one_is_back(ray_cluster, test_presets):
    node = ray_cluster.add_worker_node(resource="dermis_lost")
    try:
        with cluster_daemon(ray_cluster.address, resource="dermis_lost", workers=1, start_timeout_s=60) as d:
            slot = d.executor.pool.slots[0]
            ray_cluster.kill_node(node)  # its worker is idle: the monitor notices the node is gone
            wait_for(lambda: slot.waiting, 30, "the worker to leave the pool")
            with client(d) as c:
                job_id = c.submit(request(raw_image(32, 32), preset="lite", seed=1))
                job = wait_for(lambda: d.queue.get(job_id).finished and d.queue.get(job_id), 30, "the job to fail")
                assert job.state.value == "failed" and job.error_code == "network_unavailable"
                assert f"lost its Ray cluster at {ray_cluster.address}: no worker is left" in job.message
                assert "worker-1: restarting: its node" in job.message
                assert c.info().workers[0].removed.startswith("restarting"), "the daemon still answers"
                # a node comes back: jobs run on the cluster again
                node = ray_cluster.add_worker_node(resource="dermis_lost")
                wait_for(lambda: slot.alive, RESTART_BOUND_S, "the worker back in the pool")
                arr = raw_image(32, 32, seed=2)
                res = c.run(request(arr, preset="lite", seed=1, output="full"))
                assert np.array_equal(result_array(res), local_run("lite", arr, 1))
    finally:
        if node in ray_cluster.nodes:
            ray_cluster.kill_node(node)


def test_workers_lacking_a_preload_presets_weights_leave_the_pool(ray_cluster, test_presets):
    from daemon.cluster.pool import ClusterUnavailable

    node = ray_cluster.add_worker_node(resource="dermis_preload")
    try:
        with pytest.raises(ClusterUnavailable) as e, cluster_daemon(
                ray_cluster.address, resource="dermis_preload", preload=("needs-weights",), workers=1,
                start_timeout_s=60):
            pass
    finally:
        ray_cluster.kill_node(node)
    assert "no cluster worker could start" in str(e.value)
    assert "worker-1: its models failed to load:" in str(e.value) and "skin_detail" in str(e.value)


def test_losing_the_cluster_hands_jobs_to_the_local_device_when_configured(ray_cluster, portrait):
    arr = images.to_array(portrait)[:64, :64]
    node = ray_cluster.add_worker_node(resource="dermis_fallback")
    with cluster_daemon(ray_cluster.address, resource="dermis_fallback", local_fallback=True, workers=1,
                        start_timeout_s=60) as d:
        assert hasattr(d.executor, "pool"), f"the cluster did not start: {d.warnings}"
        assert len(d.executor.pool.live()) == 1
        ray_cluster.kill_node(node)
        wait_for(lambda: not d.executor.pool.live(), 30, "the worker to leave the pool")
        with client(d) as c:
            res = c.run(request(arr, preset="lite", seed=3, output="full"))
        assert np.array_equal(result_array(res), local_run("lite", arr, 3))
        assert d.executor.fallback.busy is False
        job = d.queue.jobs(include_finished=True)[0]
        assert not any(m.startswith("running on cluster") for m in _messages(job)), "it ran on this machine"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("auto", [False, True], ids=["address", "auto_stale"])
def test_an_unreachable_cluster_at_start_stops_serve_with_a_clear_error(tmp_path, auto):
    """An address nobody answers at, given or found by "auto" (RAY_ADDRESS here; a stale address of the
    last cluster on this machine is the same case), stops serve in seconds, not Ray's minutes."""
    address = f"127.0.0.1:{_closed_port()}"
    env = {**os.environ, "RAY_ADDRESS": address} if auto else None
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "daemon", "serve", "--ray", "auto" if auto else address, "--listen",
                          f"unix:{tmp_path / 'd.sock'}"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=env)
    took = time.monotonic() - t0
    assert run.returncode != 0 and not (tmp_path / "d.sock").exists()
    said = "cannot connect to the Ray cluster at " + ("auto (auto is " if auto else f"{address} (")
    assert said in run.stderr, run.stderr[-2000:]
    assert "Connection refused" in run.stderr
    assert took < 60, f"serve took {took:.0f} s to give up"


def test_an_unreachable_cluster_with_local_fallback_serves_local_jobs(tmp_path, short_tmp):
    from ._daemon_helpers import ServeProcess

    address = f"127.0.0.1:{_closed_port()}"
    (tmp_path / "dermis.toml").write_text("[cluster]\nlocal_fallback = true\n")
    serve = ServeProcess(short_tmp / "state", "--ray", address, "--config", str(tmp_path / "dermis.toml"),
                         "--listen", f"unix:{short_tmp / 'd.sock'}", timeout=90)
    try:
        arr = raw_image(32, 32, seed=4)
        with serve.client(timeout=30.0) as c:
            res = c.run(request(arr, preset="lite", seed=2, output="full"))
            assert not c.info().workers
        assert np.array_equal(result_array(res), local_run("lite", arr, 2))
        log = serve.tail(20000)
        assert f"cannot connect to the Ray cluster at {address}" in log
        assert "local_fallback is set, so this daemon runs every job on this machine" in log
    finally:
        assert serve.stop() == 0
