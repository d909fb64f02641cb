"""The GIMP plug-in's GIMP-free parts on the host: settings → job, progress text, the cancel guard
(against a real `dermis serve`), and `dermis install-plugin gimp`. The GIMP glue itself is tested
inside real GIMP 3 in test_gimp_editor.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import pytest

from daemon.cli import main
from daemon.install import gimp as install_gimp
from plugin_gimp import job
from plugin_gimp._client import client, editors

from . import _gimp_helpers as g
from .conftest import REPO, wait_for

# ------------------------------------------------------------------------------ settings and jobs


CONFIG = {"preset": " lite ", "scale": 2.0, "output": "detail", "strength": 60, "feather": 4.0, "context": -1,
          "denoise-1": 0.35, "denoise-2": 0.0, "overrides": "grain.strength=0.05; skin_texture.strength = 0.01",
          "seed": -1, "variations": 3, "islands": False, "faces": True, "server": "127.0.0.1:5000", "token": ""}


def _preset(name, stage_params):
    stages = [client.StageInfo(sid, "k", True, False, params) for sid, params in stage_params]
    return client.PresetInfo(name, name, "", 1.0, stages, context=96, feather=12.0)


SRPO = _preset("supir-srpo", [("supir", {"steps": "45"}), ("refine", {"denoise": "0.3"}),
                              ("final", {"denoise": "0.2"})])
OTHER = _preset("other", [("pass_a", {"denoise": "0.5"}), ("grain", {})])
LITE = _preset("lite", [("resample", {}), ("skin_texture", {"strength": "0.03"}), ("grain", {})])


def test_settings_from_config_and_overrides():
    s = job.Settings.from_config(SimpleNamespace(get_property=CONFIG.__getitem__))
    assert (s.preset, s.scale, s.output, s.strength, s.variations, s.islands, s.faces) == (
        "lite", 2.0, "detail", 60, 3, False, True)
    # the denoise fields go to the stages the daemon lists, whatever their ids
    assert s.override_map(SRPO) == ({"grain.strength": "0.05", "skin_texture.strength": "0.01", "feather": "4",
                                     "refine.denoise": "0.35"}, [])
    assert s.override_map(OTHER)[0]["pass_a.denoise"] == "0.35"
    both = job.Settings(denoise=(0.4, 0.25))
    assert both.override_map(SRPO)[0] == {"refine.denoise": "0.4", "final.denoise": "0.25"}
    # a remembered denoise with a preset that has no such stage: not sent, and the user is told
    out, notes = both.override_map(LITE)
    assert out == {} and notes == [
        "Denoise 1 was not used: preset 'lite' has no stage(s) with a denoise setting.",
        "Denoise 2 was not used: preset 'lite' has no stage(s) with a denoise setting."]
    assert both.override_map(OTHER) == ({"pass_a.denoise": "0.4"}, [
        "Denoise 2 was not used: preset 'other' has 1 stage(s) with a denoise setting."])
    # parsed by the thin client's parser, as `dermis --set` parses: recipe keys, commas in values
    assert job.Settings(overrides="context=96\nrefine.prompt=a photo, natural skin; grain.strength = 0.1",
                        context=160).override_map()[0] == {
        "context": "160", "refine.prompt": "a photo, natural skin", "grain.strength": "0.1"}
    assert job.Settings().context_px(None) == 0 and job.Settings().context_px(SRPO) == 96
    assert job.Settings(context=200).context_px(SRPO) == 200
    assert job.Settings(seed=7, variations=3).seeds() == [7, 8, 9]
    assert len(job.Settings(variations=2).seeds()) == 2


@pytest.mark.parametrize("bad, words", [
    ({"overrides": "grain.strength"}, "key=value"),
    ({"overrides": "grain.strength=0.1, =1"}, "key=value"),
    ({"scale": 9.0}, "between 0.25 and 8"),
    ({"denoise": (0.0, 1.5)}, "Denoise 2"),
    ({"output": "both"}, "normal or detail"),
    ({"strength": 101}, "0 to 100"),
    ({"variations": 5}, "1 to 4"),
])
def test_bad_settings_say_what_is_wrong(bad, words):
    with pytest.raises(job.SettingsError, match=words.replace(".", r"\.")):
        job.Settings(**bad).check()


def test_job_request_is_an_editor_layer_job():
    s = job.Settings(preset="lite", scale=1.0, seed=-1, overrides="grain.strength=0.1", output="detail")
    req = job.job_request(s, pixels=b"\0" * 24, width=4, height=2, channels=3, bit_depth=8,
                          mask=b"\xff" * 8)
    assert isinstance(req, client.JobRequest)
    assert (req.output, req.priority, req.client_name, req.content) == ("layer", "editor", "gimp", "detail")
    assert req.seed is None and req.scale == 1.0 and req.mask == b"\xff" * 8 and req.job_id
    assert req.overrides == {"grain.strength": "0.1"}
    assert job.job_request(job.Settings(seed=12), pixels=b"\0" * 3, width=1, height=1, channels=3,
                           bit_depth=8, mask=None, seed=13).seed == 13


def _ev(kind, **kw):
    return client.Event(client.EventKind(kind), "j", 1, **kw)


def test_progress_text_is_the_shared_text():
    """The thin client's words (proto/editors.py), prefixed, throttled, with the job's share of the bar."""
    texts, fractions, now = [], [], [0.0]
    r = job.Reporter(texts.append, fractions.append, rate=10, clock=lambda: now[0])
    r.job(1, 2)
    r(_ev("queued", position=2))
    r(_ev("stage", stage="grain", message="grain: started"))
    r(_ev("progress", stage="grain", step=1, steps=4, tile=1, tiles=2, fraction=0.5))
    now[0] += 0.01  # too soon: dropped
    r(_ev("progress", stage="grain", step=2, steps=4, tile=1, tiles=2, fraction=0.6))
    r(_ev("preview", stage="skin_texture", preview=client.Preview(64, 48, b"", stage="skin_texture")))
    r(_ev("message", message="skin_detail: skipped, weights not found"))
    r(_ev("done"))
    assert texts == ["Dermis: job 2 of 2: Queued: 2 job(s) ahead", "Dermis: job 2 of 2: grain: started",
                     "Dermis: job 2 of 2: grain: tile 1/2, step 1/4 (50%)",
                     "Dermis: job 2 of 2: preview after skin_texture (64x48)",
                     "Dermis: job 2 of 2: Inserting the result"]
    assert fractions == [0.75, 1.0]
    assert r.messages == ["skin_detail: skipped, weights not found"] and r.previews == 1
    assert job.explain(client.DaemonUnavailable("no daemon at x", "unavailable")).endswith(
        editors.hint("unavailable", "gimp"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = g.serve_on_tcp(tmp_path_factory.mktemp("daemon-state"))
    yield d
    d.stop()


def _request(settings, seed, portrait):
    import numpy as np

    from pipeline import images

    arr = np.ascontiguousarray(images.to_array(portrait, mode="RGB")[100:164, 150:230])
    return job.job_request(settings, pixels=arr.tobytes(), width=80, height=64, channels=3, bit_depth=8,
                           mask=None, seed=seed)


def test_run_jobs_against_the_daemon(daemon, portrait):
    """Two jobs (two seeds) through a real `dermis serve` with lite: both results in order, the
    progress says which job, lite's previews show in the text, the preset info comes from the daemon."""
    settings = job.Settings(preset="lite", scale=1.0, server=daemon.address, token=daemon.token)
    with client.Client(daemon.address, daemon.token, timeout=60) as c:  # a loaded CI machine
        preset = job.preset_info(c, "lite")
        assert job.preset_info(c, "no-such-preset") is None
    assert preset is not None and editors.denoise_stages(preset) == [] and preset.context == 64
    texts, fractions = [], []
    reporter = job.Reporter(texts.append, fractions.append, rate=1e6)
    results = job.run_jobs(settings, [_request(settings, 7, portrait), _request(settings, 8, portrait)],
                           reporter, guard=False)
    assert [r.layer_name for r in results] == ["Dermis (lite, 7)", "Dermis (lite, 8)"]
    assert any(t.startswith("Dermis: job 1 of 2: ") for t in texts) and texts[-1] == (
        "Dermis: job 2 of 2: Inserting the result")
    assert preset.previews and reporter.previews >= 2, texts
    assert any("preview after" in t for t in texts), texts
    assert fractions[-1] == 1.0 and max(f for f in fractions if f < 1) <= 1.0


def test_run_jobs_raises_what_the_daemon_said(daemon, portrait):
    """The daemon refuses the second job: its message comes through."""
    ok = job.Settings(preset="lite", scale=1.0, server=daemon.address, token=daemon.token)
    bad = job.Settings(preset="lite", scale=1.0, server=daemon.address, token=daemon.token,
                       overrides="no_stage.strength=1")
    with pytest.raises(client.ClientError) as e:
        job.run_jobs(ok, [_request(ok, 7, portrait), _request(bad, 8, portrait)], guard=False)
    assert "no_stage" in str(e.value)


# ------------------------------------------------------------------------------------ cancel guard


def test_guard_leaves_quietly_when_the_job_ended():
    from plugin_gimp import cancel_guard

    guard = cancel_guard.spawn(["some-job"], f"127.0.0.1:{g.free_port()}", "t")
    assert guard is not None
    guard.finish()
    assert guard._proc.wait(20) == 0  # no cancel attempted (it would fail: nothing listens there)


def test_guard_cancels_the_jobs_when_the_plugin_is_killed(daemon, portrait):
    """What happens when GIMP's progress Cancel SIGKILLs the plug-in in the middle of a run of two
    jobs (two islands or seeds): the running one and the queued one are both cancelled."""
    import numpy as np

    from pipeline import images

    big = np.resize(images.to_array(portrait, mode="RGB"), (1400, 1400, 3))
    ids = ["guard-test-job-1", "guard-test-job-2"]
    requests = [client.JobRequest(pixels=big.tobytes(), width=1400, height=1400, channels=3, preset="lite",
                                  scale=2.0, seed=1, job_id=job_id, client_name="gimp") for job_id in ids]
    # a stand-in for the plug-in process: it starts the guard, then waits to be killed
    plugin = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from plugin_gimp import cancel_guard; "
         f"cancel_guard.spawn({ids!r}, {daemon.address!r}, {daemon.token!r}, 'guard-test-client'); "
         "print('ready', flush=True); time.sleep(600)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert plugin.stdout is not None
    try:
        assert plugin.stdout.readline().strip() == "ready"
        with client.Client(daemon.address, daemon.token, client_id="guard-test-client") as c:  # the plug-in's id
            for r in requests:
                c.submit(r)
            wait_for(lambda: any(j.job_id == ids[0] and j.state == "running" for j in c.list_jobs()),
                     30, "the job to start")
            plugin.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            ends = [list(c.watch(job_id))[-1].kind for job_id in ids]
        assert ends == [client.EventKind.cancelled] * 2, ends
        assert time.monotonic() - t0 < 10
    finally:
        plugin.kill()
        plugin.wait()
        plugin.stdout.close()


# ------------------------------------------------------------------------------------- installing


def test_default_plugin_folders(tmp_path):
    home = tmp_path
    assert install_gimp.default_target("Windows", home, {"APPDATA": r"C:\Users\u\AppData\Roaming"}) \
        .as_posix().endswith("Roaming/GIMP/3.0/plug-ins")
    assert install_gimp.default_target("Darwin", home, {}) == \
        home / "Library/Application Support/GIMP/3.0/plug-ins"
    assert install_gimp.default_target("Linux", home, {}) == home / ".config/GIMP/3.0/plug-ins"
    assert install_gimp.default_target("Linux", home, {"XDG_CONFIG_HOME": str(home / "cfg")}) == \
        home / "cfg/GIMP/3.0/plug-ins"
    flatpak = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    flatpak.mkdir(parents=True)
    assert install_gimp.default_target("Linux", home, {}) == flatpak / "plug-ins"


def test_python_version_is_detected():
    version = install_gimp.detect_python_version("Linux")
    major, minor = version.split(".")
    assert major == "3" and minor.isdigit()
    if sys.platform.startswith("linux"):  # no GIMP for Windows here: the bundled 3.12 is assumed
        assert install_gimp.detect_python_version("Windows") == install_gimp.WINDOWS_PYTHON == "3.12"


def test_default_install_goes_to_the_user_plugins_folder(tmp_path, monkeypatch):
    for var in ("XDG_CONFIG_HOME", "APPDATA"):
        monkeypatch.setenv(var, str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["install-plugin", "gimp", "--no-vendor", "--python-version", "3.13"]) == 0
    folder = install_gimp.default_target()
    assert str(folder).startswith(str(tmp_path)) and (folder / "dermis/dermis.py").is_file()


def _fake_wheel(folder):
    folder.mkdir()
    with zipfile.ZipFile(folder / "grpcio-0-cp313-cp313-manylinux_2_17_x86_64.whl", "w") as z:
        z.writestr("grpc/__init__.py", "MARK = 'vendored'\n")
    return folder


def test_install_reinstall_uninstall(tmp_path, capsys):
    target = tmp_path / "plug-ins"
    wheels = _fake_wheel(tmp_path / "wheels")
    argv = ["install-plugin", "gimp", "--target", str(target), "--python-version", "3.13", "--wheels", str(wheels)]
    assert main(argv) == 0
    dest = target / "dermis"
    launcher = dest / "dermis.py"
    assert launcher.stat().st_mode & stat.S_IXUSR  # GIMP runs only executable plug-ins
    assert launcher.read_text() == (REPO / "plugin_gimp/launcher.py").read_text()
    for name in ("procedure.py", "image_io.py", "dialog.py", "job.py", "cancel_guard.py", "_client.py"):
        assert (dest / "plugin_gimp" / name).is_file(), name
    assert (dest / "plugin_gimp/proto/client.py").is_file()
    assert not (dest / "plugin_gimp/proto/regen.py").exists()
    assert not (dest / "plugin_gimp/launcher.py").exists()
    assert (dest / "vendor/grpc/__init__.py").read_text() == "MARK = 'vendored'\n"
    marker = json.loads((dest / install_gimp.MARKER).read_text())
    assert marker["python"] == "3.13" and marker["vendored"]
    assert "Refine skin" in capsys.readouterr().out

    # the installed copy imports its own client (relative import), not the checkout's
    probe = subprocess.run([sys.executable, "-c", "import plugin_gimp._client as m; print(m.client.__file__)"],
                           cwd=dest, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(dest)})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(dest / "plugin_gimp/proto/client.py")

    (dest / "stale.txt").write_text("from an older install")
    assert main(argv[:-2] + ["--no-vendor"]) == 0  # reinstall replaces the folder
    assert not (dest / "stale.txt").exists() and not (dest / "vendor").exists()

    assert main(["install-plugin", "gimp", "--target", str(target), "--uninstall"]) == 0
    assert not dest.exists() and target.is_dir()
    assert main(["install-plugin", "gimp", "--target", str(target), "--uninstall"]) == 0  # nothing left


def test_foreign_folder_is_left_alone(tmp_path, capsys):
    dest = tmp_path / "dermis"
    dest.mkdir()
    (dest / "dermis.py").write_text("# someone else's\n")
    assert main(["install-plugin", "gimp", "--target", str(tmp_path), "--no-vendor",
                 "--python-version", "3.13"]) == 1
    assert main(["install-plugin", "gimp", "--target", str(tmp_path), "--uninstall"]) == 1
    assert (dest / "dermis.py").read_text() == "# someone else's\n"
    assert "not installed by Dermis" in capsys.readouterr().err


def test_failed_vendoring_keeps_the_old_install(tmp_path, capsys):
    target = tmp_path / "plug-ins"
    assert main(["install-plugin", "gimp", "--target", str(target), "--no-vendor", "--python-version", "3.13"]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["install-plugin", "gimp", "--target", str(target), "--python-version", "3.13",
                 "--wheels", str(empty)]) == 1
    assert "no .whl files" in capsys.readouterr().err
    assert (target / "dermis/dermis.py").is_file()
    assert not any(p.name.startswith(".dermis-installing") for p in target.iterdir())
