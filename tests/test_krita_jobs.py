"""Unit tests of the Krita plugin's pure-Python glue: job state and threading, options, pixel bytes.

The daemon is replaced here by the scripted client of tests/fake_daemon.py (the one place a stand-in
is allowed: these tests are about the plugin's own state machine). Everything touching Krita or the real daemon is tested
inside real Krita in test_krita_editor.py.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from plugin_krita import options, pixels, uitime
from plugin_krita.jobs import Call, Job, Phase
from plugin_krita.runs import Piece, Run, Scheduler
from proto import client as dc

from .fake_daemon import PROGRESS, FakeDaemonClient, poll_until, result_for


def _request() -> dc.JobRequest:
    return dc.JobRequest(pixels=b"\0" * 16, width=2, height=2, channels=4, client_name="krita")


def test_job_runs_to_done_on_a_worker_thread():
    fake = FakeDaemonClient(PROGRESS)
    job = Job(_request(), lambda: fake, context="target").start()
    assert job.id and fake is not None
    phases = poll_until(job)
    assert job.phase == Phase.done and job.result.layer_name == "Dermis (lite, 7)"
    assert job.context == "target" and job.fraction == 1.0
    assert Phase.done in phases and job.messages == ["skin_detail: skipped, weights not found"]
    assert fake.watch_thread.startswith("dermis-job-") and fake.closed
    assert fake.submitted.job_id == job.id  # chosen before the upload, so Cancel always has an id


def test_progress_is_reported_in_order():
    fake = FakeDaemonClient(PROGRESS, step_s=0.05, end_with="nothing")
    job = Job(_request(), lambda: fake).start()
    texts, fractions = [], []
    while not job.finished:
        if job.poll():
            texts.append(job.status_text)
            fractions.append(job.fraction)
        time.sleep(0.002)
    assert "Queued: 1 job(s) ahead" in texts
    assert any(t.startswith("resample: step 1/2") for t in texts)
    assert any(t.startswith("grain: tile 2/4, step 2/2") for t in texts)
    assert fractions == sorted(fractions)
    # a stream that stops without done/error/cancelled is a failure, not a hang
    assert job.phase == Phase.failed and "without a result" in job.error


def test_job_error_event_becomes_message_and_code():
    job = Job(_request(), lambda: FakeDaemonClient(PROGRESS[:2], end_with="error")).start()
    poll_until(job)
    assert job.phase == Phase.failed
    assert job.error == "supir: weights not found" and job.error_code == "missing_weights"


@pytest.mark.parametrize("exc, code", [
    (dc.DaemonUnavailable("cannot reach the Dermis daemon at 127.0.0.1:1"), "unavailable"),
    (dc.DependencyMissing("grpcio is not installed in this Python"), "dependency_missing"),
    (dc.Unauthenticated("no token"), "unauthenticated"),
])
def test_client_errors_become_readable_failures(exc, code):
    def connect():
        raise exc

    job = Job(_request(), connect).start()
    poll_until(job)
    assert job.phase == Phase.failed and job.error == str(exc) and job.error_code == code


def test_a_bug_in_the_worker_is_reported_not_swallowed(capsys):
    job = Job(_request(), lambda: FakeDaemonClient(submit_error=KeyError("boom"))).start()
    poll_until(job)
    assert job.phase == Phase.failed and "Unexpected error (KeyError)" in job.error
    assert "Traceback" in capsys.readouterr().err


def test_cancel_during_upload_is_sent_right_after_submit():
    gate = threading.Event()
    fake = FakeDaemonClient(PROGRESS, submit_gate=gate, step_s=0.05)
    job = Job(_request(), lambda: fake).start()
    t0 = time.monotonic()
    job.cancel()  # the upload has not returned: nothing to send yet, and no blocking
    assert time.monotonic() - t0 < 0.05 and job.phase == Phase.cancelling
    gate.set()
    poll_until(job)
    assert job.phase == Phase.cancelled and job.result is None
    assert fake.cancel_threads == [fake.watch_thread]  # the worker sent it


def test_cancel_while_watching_uses_another_thread_and_never_blocks():
    fake = FakeDaemonClient(PROGRESS * 20, step_s=0.02)
    job = Job(_request(), lambda: fake).start()
    poll_until(job, lambda j: j.phase == Phase.running)
    t0 = time.monotonic()
    job.cancel()
    job.cancel()  # a second press does nothing
    assert time.monotonic() - t0 < 0.05
    poll_until(job)
    assert job.phase == Phase.cancelled and job.status_text == "Cancelled"
    assert len(fake.cancel_threads) == 1 and fake.cancel_threads[0] != fake.watch_thread


def test_result_racing_a_cancel_is_dropped():
    fake = FakeDaemonClient([])
    job = Job(_request(), lambda: fake)
    job._cancel_requested = True  # as if Cancel was pressed just as the done event was queued
    job._apply(dc.Event(dc.EventKind.done, job.id, 1, result=result_for(job.id)))
    assert job.phase == Phase.cancelled and job.result is None


def test_poll_never_waits_for_the_network():
    gate = threading.Event()
    job = Job(_request(), lambda: FakeDaemonClient(submit_gate=gate)).start()
    t0 = time.monotonic()
    for _ in range(100):
        job.poll()
    assert time.monotonic() - t0 < 0.05 and job.phase == Phase.submitting
    gate.set()
    poll_until(job)


def test_call_runs_off_thread_and_reports_errors():
    ok = Call(lambda: threading.current_thread().name).start()
    assert ok.wait(5) and ok.value == "dermis-call" and not ok.error

    def down():
        raise dc.DaemonUnavailable("no daemon at unix:/nowhere")

    bad = Call(down).start()
    assert bad.wait(5) and bad.value is None
    assert bad.error == "no daemon at unix:/nowhere" and bad.error_code == "unavailable"


def test_a_waiting_job_cancels_without_the_daemon():
    fake = FakeDaemonClient(PROGRESS)
    job = Job(_request(), lambda: fake)
    assert job.phase == Phase.waiting and not job.started
    job.cancel()
    assert job.phase == Phase.cancelled and job.finished and fake.submitted is None
    job.start()  # a cancelled job never starts
    assert not job.started and fake.submitted is None


# -- runs ------------------------------------------------------------------------------------------
def _run(number: int, seeds: list[int], parts: int, fake_for) -> Run:
    jobs = []
    for k, seed in enumerate(seeds):
        for p in range(parts):
            piece = Piece((p * 10, 0, 8, 8), True, f"island {p + 1} of {parts}" if parts > 1 else "", seed, k == 0)
            jobs.append(Job(_request(), fake_for, context=piece))
    return Run(number, "selection", None, jobs, content="normal", strength=100)


def test_runs_queue_and_a_few_jobs_talk_to_the_daemon_at_once():
    fakes = []

    def connect():
        fakes.append(FakeDaemonClient(PROGRESS, step_s=0.01))
        return fakes[-1]

    first, second = _run(1, [7, 8], 2, connect), _run(2, [3], 1, connect)
    sched = Scheduler(limit=3)
    assert sched.start_more([first, second]) == 3
    assert [j.started for j in first.jobs + second.jobs] == [True, True, True, False, False]
    deadline = time.monotonic() + 10
    while not (first.finished and second.finished):
        first.poll()
        second.poll()
        sched.start_more([first, second])
        active = sum(1 for j in first.jobs + second.jobs if j.started and not j.finished)
        assert active <= 3
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert len(first.done()) == 4 and len(second.done()) == 1 and len(fakes) == 5
    assert first.label_of(first.jobs[1]) == "Run 1: island 2 of 2, seed 7"
    assert first.layer_name(first.jobs[1]) == "Dermis (lite, 7) island 2 of 2"
    assert first.group_name(first.done()) == "Dermis (lite, seeds 7, 8)"
    assert second.group_name(second.done()) == ""


def test_cancelling_a_run_stops_its_running_and_its_waiting_jobs():
    run = _run(1, [1, 2, 3, 4], 1, lambda: FakeDaemonClient(PROGRESS * 50, step_s=0.02))
    Scheduler(limit=2).start_more([run])
    poll_until(run.jobs[0], lambda j: j.phase == Phase.running)
    run.cancel()
    deadline = time.monotonic() + 10
    while not run.finished:
        run.poll()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert [j.phase for j in run.jobs] == [Phase.cancelled] * 4 and run.done() == []
    assert [j.started for j in run.jobs] == [True, True, False, False]


# -- options ---------------------------------------------------------------------------------------
def _preset() -> dc.PresetInfo:
    S = dc.StageInfo
    return dc.PresetInfo("supir-srpo", "supir-srpo", "", 2.0, [
        S("face_restore", "face_restore", False, False, {}),
        S("skin_detail", "upscale_model", True, True, {"model": "skin_detail"}),
        S("supir", "supir", True, False, {}),
        S("refine", "flux_refine", True, False, {"denoise": "0.3", "steps": "20"}),
        S("final", "flux_refine", True, False, {"denoise": "0.45"}),
    ], context=96, feather=24.0)


def _info() -> dc.ServerInfo:
    return dc.ServerInfo(version="0.1.0", device="cuda:0", vram_free=18 * 2**30, vram_total=24 * 2**30,
                         default_preset="supir-srpo", presets=[_preset()],
                         weights=[dc.WeightInfo("supir_v0q", "SUPIR", "missing", ""),
                                  dc.WeightInfo("sdxl", "SDXL", "found", "/m/sdxl.safetensors")],
                         queue_length=2)


def test_controls_come_from_the_servers_preset_info():
    controls = {c.key: c for c in options.controls_for(_preset())}
    assert set(controls) == {"feather", "context", "face_restore.enabled", "skin_detail.enabled",
                             "refine.denoise", "final.denoise"}
    assert (controls["feather"].default, controls["context"].default, controls["context"].kind) == ("24", "96", "int")
    assert controls["face_restore.enabled"].default == "false" and controls["face_restore.enabled"].kind == "bool"
    assert controls["refine.denoise"].default == "0.3" and controls["refine.denoise"].kind == "float"
    assert options.controls_for(None) == []


def test_only_changed_overrides_of_this_preset_are_sent():
    s = options.Settings(overrides={"refine.denoise": "0.30", "final.denoise": "0.5",
                                    "face_restore.enabled": "true", "gone.denoise": "0.1",
                                    "skin_detail.enabled": "True", "feather": "24", "context": "160"})
    controls = options.controls_for(_preset())
    sent = options.effective_overrides(s, controls)
    assert sent == {"final.denoise": "0.5", "face_restore.enabled": "true", "context": "160"}
    assert options.context_px(s, controls) == 160 and options.context_px(options.Settings(), controls) == 96


def test_settings_survive_json_and_ignore_bad_values():
    s = options.Settings(address="127.0.0.1:5000", preset="lite", scale=2.0, seed=42,
                         overrides={"final.denoise": "0.5"}, content="detail", strength=40, variations=3,
                         islands=False, faces=True)
    assert options.Settings.from_json(s.to_json()) == s
    bad = options.Settings.from_json('{"scale": 7, "seed": -1, "preset": 3, "overrides": [1], "content": "x", '
                                     '"strength": 101, "variations": 5, "islands": 1}')
    assert bad.scale == 1.0 and 0 <= bad.seed <= options.SEED_MAX and bad.preset == "" and bad.overrides == {}
    assert (bad.content, bad.strength, bad.variations, bad.islands) == ("normal", 100, 1, True)
    assert options.Settings.from_json("not json").address == ""
    s.choose_preset("supir-srpo")
    assert s.overrides == {}  # stage ids of another preset mean nothing here


def test_server_description_and_missing_weights():
    info = _info()
    assert options.describe_server(info) == \
        "Connected: Dermis 0.1.0 on cuda:0 (18.0 of 24.0 GB free), 2 job(s) queued"
    assert options.describe_missing(info).startswith("Missing weights: supir_v0q.")
    assert options.find_preset(info, "").name == "supir-srpo" and options.find_preset(info, "x") is None


# -- pixels ----------------------------------------------------------------------------------------
def test_swap_red_blue_8_and_16_bit():
    assert pixels.swap_red_blue(bytes([1, 2, 3, 4, 5, 6, 7, 8]), 8) == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    px = struct.pack("<8H", 0x0102, 0x0304, 0x0506, 0x0708, 10, 20, 30, 40)
    swapped = struct.unpack("<8H", pixels.swap_red_blue(px, 16))
    assert swapped == (0x0506, 0x0304, 0x0102, 0x0708, 30, 20, 10, 40)
    with pytest.raises(ValueError):
        pixels.swap_red_blue(b"\0" * 6, 8)
    assert pixels.is_blank_mask(b"\0\0\0") and not pixels.is_blank_mask(b"\0\1\0")


def test_split_alpha_makes_pixels_opaque_and_keeps_the_coverage_as_one_byte_a_pixel():
    opaque, alpha = pixels.split_alpha(bytes([1, 2, 3, 40, 5, 6, 7, 0]), 8)
    assert opaque == bytes([1, 2, 3, 255, 5, 6, 7, 255]) and alpha == bytes([40, 0])
    px = struct.pack("<12H", 1, 2, 3, 0x8001, 4, 5, 6, 0xFFFF, 7, 8, 9, 0x00FF)
    opaque, alpha = pixels.split_alpha(px, 16)
    assert struct.unpack("<12H", opaque) == (1, 2, 3, 0xFFFF, 4, 5, 6, 0xFFFF, 7, 8, 9, 0xFFFF)
    assert alpha == bytes([0x80, 0xFF, 0x00])  # the high byte: within 1/255 of a/257 (128.5, 255, 0.99)
    # many steps: every pixel's alpha, in order
    big = bytes(range(256)) * (3 * pixels.CHUNK // 256)
    assert pixels.split_alpha(big, 8)[1] == big[3::4]


def test_step_times_tell_the_ui_threads_own_work_from_waiting():
    """The GUI test bounds the UI thread's CPU time per step: a step that works shows it, a step
    that waits (as Krita's own waits do) does not; the wall clock sees both."""
    uitime.reset()
    with uitime.timed("works"):
        end = time.thread_time() + 0.08
        while time.thread_time() < end:
            pass
    with uitime.timed("waits"):
        time.sleep(0.08)
    uitime.timed_tick(lambda: uitime.record(uitime.ADD_STEP, uitime.clock()))
    r = uitime.report()
    assert r["works"][2] >= 0.075 and r["works"][1] >= 0.075
    assert r["waits"][2] < 0.02 and r["waits"][1] >= 0.075
    assert r["tick adding a layer"][0] == 1 and "tick" not in r and uitime.count(uitime.ADD_STEP) == 1
    uitime.reset()
    assert uitime.report() == {}
