"""'Download missing models…' in the plugins, their editor-free parts: the Krita job (worker thread,
progress text from the daemon's words, cancel), the GIMP follow-up and progress text, the plan shown
before asking, and each front end's own hint. The daemon is tests/fake_daemon.py here; the real one
(and the real editors) in test_models_daemon.py and test_models_editors.py."""

from __future__ import annotations

import threading
import time

from plugin_gimp import job as gimp_job
from plugin_krita.jobs import Job, Phase
from proto import client as dc
from proto import editors

from .fake_daemon import FakeDaemonClient, poll_until

K = dc.EventKind
DOWNLOAD = [
    (K.started, {}),
    (K.stage, {"stage": "sdxl", "message": "sdxl: started"}),
    (K.progress, {"stage": "sdxl", "step": 1, "steps": 7, "fraction": 0.1,
                  "message": "sd_xl_base_1.0_0.9vae.safetensors (file 1 of 2): 1.0 MB of 6.9 MB"}),
    (K.message, {"stage": "sdxl", "message": "sdxl: checkpoints/sd_xl_base_1.0_0.9vae.safetensors"}),
    (K.progress, {"stage": "flux_vae", "step": 1, "steps": 1, "fraction": 0.9,
                  "message": "ae.safetensors (file 2 of 2): 335.3 MB of 335.3 MB"}),
]
PLAN = dc.ModelPlan(
    files=[dc.ModelFile("sdxl", filename="sd_xl_base_1.0_0.9vae.safetensors", size=6_938_078_334,
                        action="download"),
           dc.ModelFile("skin_detail", filename="1x-ITF-SkinDiffDetail-Lite-v1.pth", size=20_099_337,
                        non_commercial=True, action="download"),
           dc.ModelFile("flux_t5_tokenizer", action="manual", note="t5_tokenizer ships with ComfyUI (…)"),
           dc.ModelFile("flux_t5", action="found", path="/m/text_encoders/t5xxl_fp16.safetensors")],
    download_bytes=6_958_177_671, free_bytes=100_000_000_000, folder="/m",
    licences_to_accept=["1x-ITF-SkinDiffDetail-Lite-v1.pth (skin_detail): CC-BY-NC-SA-4.0; https://…"])


def test_krita_download_job_follows_the_daemons_words_on_a_worker_thread():
    fake = FakeDaemonClient(DOWNLOAD, step_s=0.03)  # events apart, so each poll sees one
    job = Job.download("supir-srpo", lambda: fake, accept_licences=True).start()
    assert job.status_text == "Asking the daemon to download…"
    texts = poll_until(job, seen=lambda j: j.status_text)
    assert job.phase == Phase.done and fake.closed
    assert fake.fetch_requests == [dict(preset="supir-srpo", roles=[], variant="", accept_licences=True,
                                        client_name="krita")]
    assert "sdxl: sd_xl_base_1.0_0.9vae.safetensors (file 1 of 2): 1.0 MB of 6.9 MB (10%)" in texts
    assert fake.watch_thread.startswith("dermis-job-") and fake.watch_thread != threading.current_thread().name
    assert job.messages == ["sdxl: checkpoints/sd_xl_base_1.0_0.9vae.safetensors"]


def test_krita_download_cancel_never_blocks_and_ends_cancelled():
    fake = FakeDaemonClient(DOWNLOAD * 20, step_s=0.02)
    job = Job.download("", lambda: fake, accept_licences=False).start()
    while job.fraction == 0:
        job.poll()
        time.sleep(0.005)
    t0 = time.monotonic()
    job.cancel()
    assert time.monotonic() - t0 < 0.05  # the cancel RPC is sent from its own thread
    poll_until(job, seen=lambda j: j.status_text)
    assert job.phase == Phase.cancelled and fake.cancel_threads and fake.cancel_threads[0] != "MainThread"


def test_krita_download_failure_gets_the_dockers_hint():
    fake = FakeDaemonClient(DOWNLOAD[:2], end_with="error")  # the fake's error is missing_weights
    job = Job.download("", lambda: fake, accept_licences=True).start()
    poll_until(job, seen=lambda j: j.status_text)
    assert job.phase == Phase.failed and job.error_code == "missing_weights"
    hint = editors.hint("missing_weights", "krita")
    assert "Download missing models…" in hint and "dermis" not in hint  # no command a Krita user cannot run


def test_the_plan_shown_before_asking():
    text = PLAN.describe().splitlines()
    assert text[0] == "Download 2 file(s), about 7.0 GB, into /m (100.0 GB free):"
    assert "  sdxl: sd_xl_base_1.0_0.9vae.safetensors (6.9 GB)" in text
    assert "To place by hand:" in text and "  flux_t5_tokenizer: t5_tokenizer ships with ComfyUI (…)" in text
    assert text[-2].startswith("These models are for non-commercial use only")
    assert dc.ModelPlan([], 0, 0, "/m", []).describe() == "Nothing to download: every file is found."


def test_gimp_download_follows_the_job_and_reports_progress():
    fake = FakeDaemonClient(DOWNLOAD)
    texts, fractions = [], []
    reporter = gimp_job.Reporter(texts.append, fractions.append, rate=1e6, describe=editors.download_text)
    result = gimp_job.run_download(gimp_job.Settings(preset="supir-srpo"), accept_licences=True,
                                   on_event=reporter, guard=False, connect=lambda address, token: fake)
    assert result.layer_name == "Dermis (lite, 7)"  # the fake's done event; a real download has no layer
    assert fake.fetch_requests[0]["accept_licences"] and fake.fetch_requests[0]["client_name"] == "gimp"
    # the thin client's words (proto/editors.py download_text), as the Krita docker shows them
    assert "Dermis: Downloading sdxl" in texts
    assert "Dermis: sdxl: sd_xl_base_1.0_0.9vae.safetensors (file 1 of 2): 1.0 MB of 6.9 MB (10%)" in texts
    assert texts[-1] == "Dermis: Models downloaded" and fractions[-1] == 1.0
    assert reporter.messages == ["sdxl: checkpoints/sd_xl_base_1.0_0.9vae.safetensors"]


def test_gimp_names_its_own_menu_for_missing_weights():
    text = gimp_job.explain(dc.JobFailed("Missing weights: preset 'x' cannot run …", "missing_weights"))
    assert "Filters → Enhance → Dermis → Download missing models…" in text and "dermis models" not in text
