"""Watch folders configured in the daemon: their jobs go through the daemon's queue at batch priority
(an editor job overtakes them), ListJobs and `dermis status` report each folder's counts."""

from __future__ import annotations

import pytest

import pipeline
from daemon.cli import main
from daemon.jobs.queue import State
from daemon.watch.settings import base_settings
from pipeline import images
from proto.client import default_runtime_file

from ._daemon_helpers import client, raw_image, request, start
from ._watch_helpers import assert_accounted, expected_output, journal_rows
from .conftest import wait_for


def _config(*folders: dict) -> pipeline.Config:
    fast = {"stable_s": 0.2, "rescan_s": 1.0, "give_up_s": 1.0}
    return pipeline.Config(raw={"watch": [{**fast, **f} for f in folders]})


def _watch_jobs(d, state: State | None = None):
    return [j for j in d.queue.jobs(include_finished=True)
            if j.spec.client_name == "watch" and (state is None or j.state is state)]


def test_an_editor_job_overtakes_the_folder_batch_and_folders_are_counted(short_tmp, test_presets, tmp_path,
                                                                         capsys):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    good = {f"b{i}.png": images.encode(images.from_array(raw_image(256, 256, seed=i)), "PNG")
            for i in range(3)}
    config = _config({"in": str(inbox), "out": str(out), "preset": "tiles"},
                     {"in": str(tmp_path / "other"), "out": str(tmp_path / "o2"), "preset": "needs-weights"})
    d = start(short_tmp, pipeline=config, runtime_file=default_runtime_file())
    try:
        for name, data in good.items():
            (inbox / name).write_bytes(data)
        # the first folder job has made progress (it is past loading, between two tiles)
        wait_for(lambda: any(0 < j.fraction < 0.5 for j in _watch_jobs(d, State.RUNNING)), 60,
                 "a running folder job")
        batch = _watch_jobs(d, State.RUNNING)[0]
        with client(d) as c:
            editor_id = c.submit(request(raw_image(48, 48), preset="lite", seed=1, priority="editor",
                                         client_name="krita"))
            editor_result = c.fetch_result(editor_id)
        assert editor_result.width == 96
        editor = d.queue.get(editor_id)
        batch.wait(60)
        assert editor.finished_at < batch.finished_at, "the editor job finished first"
        assert batch.state is State.DONE
        assert any(e.message.startswith("paused") for e in batch.events_after(0))
        wait_for(lambda: d.watch.counts()[0]["done"] == 3, 120, "the folder batch")
        with client(d) as c:
            folders = {f.folder: f for f in c.watch_folders()}
            counts = {cc.client_name: cc for cc in c.job_counts()}
        assert main(["status"]) == 0
        said = capsys.readouterr().out
    finally:
        d.stop(grace=5.0)
    mine, other = folders[str(inbox)], folders[str(tmp_path / "other")]
    assert (mine.preset, mine.pending, mine.running, mine.done, mine.skipped, mine.failed, mine.error) == (
        "tiles", 0, 0, 3, 0, 0, "")
    assert "Missing weights" in other.error  # that folder is refused, the daemon and the others go on
    assert counts["watch"].done == 3 and counts["krita"].done == 1
    assert f"{inbox} -> {out} (tiles): 0/0/3/0/0" in said and "NOT WATCHED: Missing weights" in said
    # yielding to the editor at a step boundary changed nothing in the results
    tiles = base_settings("tiles")
    assert_accounted(inbox, out, good, expected={n: expected_output(b, tiles) for n, b in good.items()})


def test_daemon_shutdown_leaves_the_running_file_claimed_and_the_next_daemon_finishes_it(
        short_tmp, test_presets, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    data = images.encode(images.from_array(raw_image(320, 320, seed=5)), "PNG")
    (inbox / "big.png").write_bytes(data)
    config = _config({"in": str(inbox), "out": str(out), "preset": "tiles"})
    d = start(short_tmp, pipeline=config)
    try:
        wait_for(lambda: any(0 < j.fraction < 0.3 for j in _watch_jobs(d, State.RUNNING)), 60,
                 "a running folder job")
    finally:
        d.stop(grace=5.0)
    assert _watch_jobs(d)[0].state is State.CANCELLED
    assert [r[1] for r in journal_rows(inbox)] == ["queued"]  # claimed, not failed, not counted as a crash
    assert not out.exists() or list(out.iterdir()) == []
    d = start(short_tmp, pipeline=config)
    try:
        wait_for(lambda: d.watch.counts()[0]["done"] == 1, 120, "the resumed file")
    finally:
        d.stop(grace=5.0)
    assert_accounted(inbox, out, {"big.png": data}, expected={"big.png": expected_output(data, base_settings("tiles"))})


def test_bad_watch_tables_stop_the_daemon_from_starting(short_tmp, tmp_path):
    for table, message in (({"in": str(tmp_path)}, "needs both"),
                           ({"in": str(tmp_path), "out": str(tmp_path / "o"), "outt": 1}, "unknown key"),
                           ({"in": str(tmp_path), "out": str(tmp_path / "o"), "preset": "nope"}, "unknown preset")):
        with pytest.raises(pipeline.InvalidParameter, match=message):
            start(short_tmp, pipeline=pipeline.Config(raw={"watch": [table]}))
