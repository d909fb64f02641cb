"""The watch folder in-process: real files, real watchdog events, the real lite and tiny-model presets."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace

import pytest

import pipeline
from daemon.cli import main
from daemon.watch.runner import LocalRunner
from daemon.watch.scan import Scanner, is_input_name
from daemon.watch.settings import base_settings
from pipeline import images

from ._watch_helpers import (
    FAST,
    TINY_PRESET,
    Watcher,
    assert_accounted,
    expected_output,
    journal_rows,
    png_bytes,
    write_user_preset,
)
from .conftest import DATA, wait_for


@pytest.fixture
def dirs(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    return inbox, out


def test_names_that_are_never_inputs():
    for name in ("a.png", "A.JPG", "b.tiff", "c.webp", "d.jpeg", "e.bmp"):
        assert is_input_name(name), name
    for name in (".a.png", "a.png.part", "a.png.tmp", "a.png~", "~$a.png", "a.png.crdownload",
                 "a.dermis.png", "a.dermis-2.png", "a.dermis.tif", "a.txt", "a.png.dermis.toml",
                 "dermis.toml", "Thumbs.db", "a.png.error.txt", "._a.png"):
        assert not is_input_name(name), name


def test_slowly_written_file_is_taken_only_when_complete(dirs):
    inbox, out = dirs
    data = png_bytes(1)
    # A writer that pauses longer than the stability window (the decode gate must hold the file)
    # and then trickles the rest faster than it (the stability gate must hold it).
    with Watcher(inbox, out, options=replace(FAST, stable_s=0.3, give_up_s=10.0, rescan_s=60)) as w:
        with open(inbox / "slow.png", "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(1.0)
            for i in range(len(data) // 2, len(data), 1024):
                f.write(data[i : i + 1024])
                f.flush()
                time.sleep(0.1)
            assert (inbox / "slow.png").exists(), "claimed while still being written"
            assert list((inbox / ".dermis" / "work").iterdir()) == []
        w.wait_finished(1)
    assert_accounted(inbox, out, {"slow.png": data}, expected={"slow.png": expected_output(data)})
    assert journal_rows(inbox)[0][2] == 1  # one attempt


def test_fifty_files_dropped_at_once_are_each_processed_once(dirs):
    inbox, out = dirs
    good = {f"p{i:02d}.png": png_bytes(100 + i) for i in range(50)}
    with Watcher(inbox, out) as w:
        for name, data in good.items():
            (inbox / name).write_bytes(data)
        counts = w.wait_finished(50, timeout=90)
    assert counts == {"pending": 0, "running": 0, "done": 50, "skipped": 0, "failed": 0}
    assert_accounted(inbox, out, good)
    assert all(r[2] == 1 for r in journal_rows(inbox))


def test_broken_files_fail_with_a_reason_and_the_batch_goes_on(dirs):
    inbox, out = dirs
    good = {"a.png": png_bytes(1), "z.png": png_bytes(2)}
    bad = {"truncated.png": "corrupt_image", "not_an_image.png": "corrupt_image",
           "empty.png": "corrupt_image", "int32.tif": "unsupported_image",
           "bomb_30000x30000.png": "image_too_large"}
    ignored = {"notes.txt": b"hello", ".hidden.png": png_bytes(3), "c.png.part": png_bytes(4),
               "d.png.tmp": png_bytes(5), "e.png~": png_bytes(6), "f.dermis.png": png_bytes(7)}
    for name, data in {**good, **ignored}.items():
        (inbox / name).write_bytes(data)
    for name in bad:
        (inbox / name).write_bytes((DATA / name).read_bytes())
    with Watcher(inbox, out) as w:
        w.wait_finished(len(good) + len(bad))
        scans = w.folder.scans
        wait_for(lambda: w.folder.scans >= scans + 2, 10, "two more scans")  # the ignored stay ignored
    assert_accounted(inbox, out, good, set(bad))
    for name, code in bad.items():
        text = (inbox / "failed" / f"{name}.error.txt").read_text()
        assert f"reason ({code})" in text and name in text and "attempts:" in text
        assert (inbox / "failed" / name).read_bytes() == (DATA / name).read_bytes()
    for name, data in ignored.items():
        assert (inbox / name).read_bytes() == data, f"{name} was touched"


def test_same_content_twice_is_processed_once(dirs):
    inbox, out = dirs
    data = png_bytes(9)
    with Watcher(inbox, out) as w:
        (inbox / "first.png").write_bytes(data)
        w.wait_finished(1)
        (inbox / "again.png").write_bytes(data)
        (inbox / "twin1.png").write_bytes(png_bytes(10))
        (inbox / "twin2.png").write_bytes(png_bytes(10))
        (inbox / "other-seed.png").write_bytes(data)
        (inbox / "other-seed.dermis.toml").write_text("seed = 5\n")  # other settings: new work
        counts = w.wait_finished(5)
    assert counts["done"] == 3 and counts["skipped"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["first.dermis.png", "other-seed.dermis.png",
                                                     "twin1.dermis.png"]
    rows = {r[0]: r for r in journal_rows(inbox)}
    assert rows["again.png"][1] == "skipped" and rows["twin2.png"][1] == "skipped"
    assert (inbox / "done" / "again.png").read_bytes() == data


def test_name_collisions_get_a_counter_and_nothing_is_overwritten(dirs):
    inbox, out = dirs
    out.mkdir()
    theirs = b"someone else's file"
    (out / "a.dermis.png").write_bytes(theirs)
    first, second = png_bytes(20), png_bytes(21)
    with Watcher(inbox, out) as w:
        (inbox / "a.png").write_bytes(first)
        w.wait_finished(1)
        (inbox / "a.png").write_bytes(second)
        w.wait_finished(2)
    assert (out / "a.dermis.png").read_bytes() == theirs
    assert (out / "a.dermis-2.png").read_bytes() == expected_output(first)
    assert (out / "a.dermis-3.png").read_bytes() == expected_output(second)
    assert (inbox / "done" / "a.png").read_bytes() == first
    assert (inbox / "done" / "a-2.png").read_bytes() == second


def test_folder_settings_and_sidecars_are_honoured(dirs):
    inbox, out = dirs
    write_user_preset(TINY_PRESET, "wtiny")
    (inbox / "dermis.toml").write_text('scale = 1.0\n[set]\n"grain.strength" = 0.05\n')
    plain, custom = png_bytes(30), png_bytes(31)
    (inbox / "custom.png").write_bytes(custom)
    (inbox / "custom.dermis.toml").write_text('scale = 2\nseed = 7\nregion = [8, 8, 32, 32]\n')
    (inbox / "plain.png").write_bytes(plain)
    (inbox / "evil.png").write_bytes(png_bytes(32))
    (inbox / "evil.png.dermis.toml").write_text('out = "/etc"\nscale = 2\n')
    (inbox / "weights.png").write_bytes(png_bytes(33))
    (inbox / "weights.dermis.toml").write_text('preset = "wtiny"\n')
    with Watcher(inbox, out) as w:
        w.wait_finished(4)
    folder = replace(base_settings("lite"), scale=1.0, overrides=("grain.strength=0.05",))
    assert (out / "plain.dermis.png").read_bytes() == expected_output(plain, folder)
    want = replace(folder, scale=2.0, seed=7, region="8,8,32,32")
    got = (out / "custom.dermis.png").read_bytes()
    assert images.decode(got).size == (128, 128) and got == expected_output(custom, want)
    assert (inbox / "done" / "custom.png.dermis.toml").read_text().startswith("scale = 2")
    evil = (inbox / "failed" / "evil.png.error.txt").read_text()
    assert "unknown key(s) out" in evil and "invalid_parameter" in evil
    weights = (inbox / "failed" / "weights.png.error.txt").read_text()
    assert "missing_weights" in weights and "1x-ITF-SkinDiffDetail" in weights
    assert not (out / "evil.dermis.png").exists() and not (out / "weights.dermis.png").exists()


def test_tiny_model_preset_and_a_16_bit_tiff(dirs, tiny_models):
    inbox, out = dirs
    write_user_preset(TINY_PRESET, "wtiny")
    config = pipeline.load_config(comfy_models=[tiny_models])
    tif16 = images.encode(images.decode(png_bytes(40, bit_depth=16)), "TIFF")
    (inbox / "deep.tif").write_bytes(tif16)
    (inbox / "flat.png").write_bytes(png_bytes(41))
    with Watcher(inbox, out, preset="wtiny", config=config) as w:
        w.wait_finished(2)
    deep = images.load(out / "deep.dermis.tif")  # TIFF in, TIFF out, 16 bits kept
    assert deep.bit_depth == 16 and deep.size == (64, 64)
    flat = images.load(out / "flat.dermis.png")
    assert flat.size == (64, 64)
    assert (out / "flat.dermis.png").read_bytes() == expected_output(
        png_bytes(41), base_settings("wtiny"), config=config)


@pytest.mark.parametrize("polling", [False, True], ids=["native-events", "polling-observer"])
def test_events_wake_the_watcher_long_before_the_rescan(dirs, polling):
    inbox, out = dirs
    opts = replace(FAST, rescan_s=120.0, polling=polling)
    with Watcher(inbox, out, options=opts) as w:
        wait_for(lambda: w.folder.scans >= 1, 10, "the first scan")  # empty; now only events can wake it
        (inbox / "late.png").write_bytes(png_bytes(50))
        t0 = time.monotonic()
        w.wait_finished(1, timeout=15)
        assert time.monotonic() - t0 < 15
    assert_accounted(inbox, out, {"late.png": png_bytes(50)})


def test_transient_errors_are_retried_then_recorded(dirs):
    inbox, out = dirs

    class FlakyGPU(LocalRunner):
        """Out of memory on the first try of every file (no GPU here to run out of)."""

        def __init__(self):
            super().__init__()
            self.seen: set[str] = set()

        def run(self, job, cancel):
            if job.name not in self.seen:
                self.seen.add(job.name)
                raise pipeline.OutOfMemory("CUDA out of memory (simulated)")
            if job.name == "never.png":
                raise pipeline.OutOfMemory("still out of memory")
            return super().run(job, cancel)

    (inbox / "ok.png").write_bytes(png_bytes(60))
    (inbox / "never.png").write_bytes(png_bytes(61))
    with Watcher(inbox, out, runner=FlakyGPU()) as w:
        w.wait_finished(2)
    rows = {r[0]: r for r in journal_rows(inbox)}
    assert rows["ok.png"][1:3] == ("done", 2)
    assert rows["never.png"][1:3] == ("failed", 3)
    text = (inbox / "failed" / "never.png.error.txt").read_text()
    assert "out_of_memory" in text and "attempts: 3" in text


def test_stopping_mid_job_keeps_the_file_claimed_for_next_time(dirs):
    inbox, out = dirs
    started = threading.Event()

    class SlowStart(LocalRunner):
        def run(self, job, cancel):
            started.set()
            while True:  # a long job: only cancellation ends it
                cancel.check()
                time.sleep(0.01)

    (inbox / "long.png").write_bytes(png_bytes(70))
    w = Watcher(inbox, out, runner=SlowStart())
    with w:
        assert started.wait(15)
    assert journal_rows(inbox)[0][1:3] == ("queued", 0)
    assert (inbox / ".dermis" / "work" / "1-long.png").exists()
    with Watcher(inbox, out) as w2:  # next start: resumed and finished by the real runner
        w2.wait_finished(1)
    assert_accounted(inbox, out, {"long.png": png_bytes(70)})


def test_status_cli_and_a_second_watcher_is_refused(dirs, capsys):
    inbox, out = dirs
    assert main(["watch", "--status", str(inbox)]) == 0
    assert "never watched" in capsys.readouterr().out
    (inbox / "a.png").write_bytes(png_bytes(80))
    (inbox / "b.png").write_bytes(b"broken")
    with Watcher(inbox, out) as w:
        w.wait_finished(2)
        assert main(["watch", str(inbox), "--out", str(out), "--preset", "lite", "--once"]) == 1
        assert "already watched" in capsys.readouterr().err
        (inbox / "c.png").write_bytes(png_bytes(81))
        assert main(["watch", "--status", str(inbox)]) == 0
        said = capsys.readouterr().out
    assert "watcher: running" in said and "pending: 1" in said and "done:    1" in said
    assert "failed:  1" in said and "b.png: failed (corrupt_image" in said
    assert main(["watch", "--status", str(inbox)]) == 0
    assert "watcher: not running" in capsys.readouterr().out


def test_cli_once_processes_and_exits_and_refuses_missing_weights_up_front(dirs, capsys):
    inbox, out = dirs
    write_user_preset(TINY_PRESET, "wtiny")
    (inbox / "a.png").write_bytes(png_bytes(90))
    rc = main(["watch", str(inbox), "--out", str(out), "--preset", "wtiny", "--once"])
    assert rc == 1 and "Missing weights" in capsys.readouterr().err
    assert (inbox / "a.png").exists() and not out.exists()
    rc = main(["watch", str(inbox), "--out", str(inbox), "--preset", "lite", "--once", "--stable", "0.1"])
    assert rc == 0
    assert "1 done" in capsys.readouterr().err
    # results written into the watched folder itself are never taken as inputs
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["a.dermis.png"]
    assert main(["watch", str(inbox), "--out", str(inbox), "--preset", "lite", "--once", "--stable", "0.1"]) == 0
    assert [r[1] for r in journal_rows(inbox)] == ["done"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["a.dermis.png"]


def test_scanner_waits_for_stable_size_and_time_then_a_full_decode(tmp_path):
    data = png_bytes(3)
    p, q = tmp_path / "a.png", tmp_path / "b.png"
    p.write_bytes(data[:100])
    q.write_bytes(data[:100])
    sc = Scanner(tmp_path, stable_s=1.0, give_up_s=5.0)
    t = 1000.0
    assert sc.scan(t).waiting == 2
    assert sc.scan(t + 1.5).ready == [p, q]  # stable: now it is decoded, one file at a time
    assert sc.verify(p) == ("wait", None) and sc.verify(q) == ("wait", None)  # truncated
    assert sc.scan(t + 1.6).waiting == 2  # within the grace period for slow writers
    p.write_bytes(data)
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    res = sc.scan(t + 1.7)
    assert res.waiting == 2 and res.ready == []  # p changed: its clock restarts
    assert sc.scan(t + 2.8).ready == [p]
    assert sc.verify(p) == ("ready", None)
    res = sc.scan(t + 6.6)  # q never changed: given up on
    assert [b.path for b in res.broken] == [q] and res.broken[0].error.code == "corrupt_image"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_runner_with_capacity_keeps_that_many_jobs_in_flight(dirs):
    """A runner whose capacity() is 2 (a Ray cluster's live workers) gets two files at once; each file
    still has one outcome. Stopping with both running leaves both claimed; the next start runs each once."""
    inbox, out = dirs
    lock = threading.Lock()
    running: set[str] = set()
    peak = [0]

    class TwoWorkers(LocalRunner):
        block = False  # True: run until cancelled

        def capacity(self) -> int:
            return 2

        def run(self, job, cancel):
            with lock:
                running.add(job.name)
                peak[0] = max(peak[0], len(running))
            try:
                deadline = time.monotonic() + 10
                while (self.block or peak[0] < 2) and time.monotonic() < deadline:
                    cancel.check()
                    time.sleep(0.01)
                return super().run(job, cancel)
            finally:
                with lock:
                    running.discard(job.name)

    good = {f"c{i}.png": png_bytes(90 + i) for i in range(5)}
    for name, data in good.items():
        (inbox / name).write_bytes(data)
    with Watcher(inbox, out, runner=TwoWorkers()) as w:
        w.wait_finished(5)
    assert peak[0] == 2, "the second file waited for the first"
    assert_accounted(inbox, out, good, expected={n: expected_output(d) for n, d in good.items()})

    more = {f"d{i}.png": png_bytes(95 + i) for i in range(2)}
    for name, data in more.items():
        (inbox / name).write_bytes(data)
    blocking = TwoWorkers()
    blocking.block = True
    with Watcher(inbox, out, runner=blocking):
        wait_for(lambda: len(running) == 2, 15, "both files running")
    rows = {r[0]: r for r in journal_rows(inbox)}
    assert [rows[n][1:3] for n in more] == [("queued", 0)] * 2
    with Watcher(inbox, out) as w2:
        w2.wait_finished(7)
    assert_accounted(inbox, out, {**good, **more})
