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
from plugin_gimp._client import client

from . import _gimp_helpers as g
from .conftest import REPO, wait_for
from .fake_daemon import PROGRESS, FakeDaemonClient

# ------------------------------------------------------------------------------ settings and jobs


def test_settings_from_config_and_overrides():
    values = {"preset": " lite ", "scale": 2.0, "refine-denoise": 0.35, "final-denoise": 0.0,
              "overrides": "grain.strength=0.05; skin_texture.strength = 0.01", "seed": -1,
              "server": "127.0.0.1:5000", "token": ""}
    s = job.Settings.from_config(SimpleNamespace(get_property=values.__getitem__))
    assert s.preset == "lite" and s.scale == 2.0 and s.server == "127.0.0.1:5000"
    assert s.override_map() == {"grain.strength": "0.05", "skin_texture.strength": "0.01",
                                "refine.denoise": "0.35"}
    # parsed as `dermis --set` parses: recipe keys too, and the daemon judges every key
    assert job.Settings(overrides="context=96\ngrain.strength = 0.1").override_map() == {
        "context": "96", "grain.strength": "0.1"}


@pytest.mark.parametrize("bad, words", [
    ({"overrides": "grain.strength"}, "key=value"),
    ({"overrides": "grain.strength=0.1, =1"}, "key=value"),
    ({"scale": 9.0}, "between 0.25 and 8"),
    ({"final_denoise": 1.5}, "Final denoise"),
])
def test_bad_settings_say_what_is_wrong(bad, words):
    with pytest.raises(job.SettingsError, match=words.replace(".", r"\.")):
        job.Settings(**bad).check()


def test_job_request_is_an_editor_layer_job():
    s = job.Settings(preset="lite", scale=1.0, seed=-1, overrides="grain.strength=0.1")
    req = job.job_request(s, pixels=b"\0" * 24, width=4, height=2, channels=3, bit_depth=8,
                          mask=b"\xff" * 8)
    assert isinstance(req, client.JobRequest)
    assert (req.output, req.priority, req.client_name) == ("layer", "editor", "gimp")
    assert req.seed is None and req.scale == 1.0 and req.mask == b"\xff" * 8
    assert req.overrides == {"grain.strength": "0.1"}
    assert job.job_request(job.Settings(seed=12), pixels=b"\0" * 3, width=1, height=1, channels=3,
                           bit_depth=8, mask=None).seed == 12


def _ev(kind, **kw):
    return client.Event(client.EventKind(kind), "j", 1, **kw)


def test_progress_text_and_throttling():
    texts, fractions, now = [], [], [0.0]
    r = job.Reporter(texts.append, fractions.append, rate=10, clock=lambda: now[0])
    r(_ev("queued", position=2))
    r(_ev("stage", stage="grain", message="grain: started"))
    r(_ev("progress", stage="grain", step=1, steps=4, tile=1, tiles=2, fraction=0.5))
    now[0] += 0.01  # too soon: dropped
    r(_ev("progress", stage="grain", step=2, steps=4, tile=1, tiles=2, fraction=0.6))
    now[0] += 0.2
    r(_ev("progress", stage="grain", step=3, steps=4, tile=2, tiles=2, fraction=0.9))
    r(_ev("message", message="skin_detail: skipped, weights not found"))
    r(_ev("done"))
    assert texts == ["Dermis: waiting in the daemon's queue (2 ahead)", "Dermis: grain: started",
                     "Dermis: grain, tile 1/2, step 1/4", "Dermis: grain, tile 2/2, step 3/4",
                     "Dermis: inserting the result"]
    assert fractions == [0.5, 0.9, 1.0]
    assert r.messages == ["skin_detail: skipped, weights not found"]


def test_run_reports_progress_and_returns_the_result():
    fake = FakeDaemonClient(PROGRESS)
    dialled: list[tuple] = []

    def connect(address, token):
        dialled.append((address, token))
        return fake

    texts, fractions = [], []
    settings = job.Settings(preset="lite", server="127.0.0.1:5000", token="t0k")
    request = job.job_request(settings, pixels=b"\0" * 12, width=2, height=2, channels=3, bit_depth=8,
                              mask=None)
    reporter = job.Reporter(texts.append, fractions.append, rate=1e6)
    result = job.run(settings, request, reporter, guard=False, connect=connect)
    assert dialled == [("127.0.0.1:5000", "t0k")] and fake.submitted is request and fake.closed
    assert result.layer_name == "Dermis (lite, 7)" and result.job_id == request.job_id
    assert texts[0] == "Dermis: waiting in the daemon's queue (1 ahead)" and texts[-1] == "Dermis: inserting the result"
    assert fractions == [0.25, 0.9, 1.0]
    assert reporter.messages == ["skin_detail: skipped, weights not found"]


def test_run_raises_what_the_daemon_said():
    request = job.job_request(job.Settings(), pixels=b"\0" * 3, width=1, height=1, channels=3, bit_depth=8,
                              mask=None)
    with pytest.raises(client.JobFailed) as e:
        job.run(job.Settings(), request, guard=False, connect=lambda a, t: FakeDaemonClient(end_with="error"))
    assert e.value.code == "missing_weights" and str(e.value) == "supir: weights not found"
    cancelled = FakeDaemonClient(PROGRESS)
    cancelled.cancel("elsewhere")  # e.g. `dermis` or a daemon shutdown cancelled it
    with pytest.raises(client.JobCancelled):
        job.run(job.Settings(), request, guard=False, connect=lambda a, t: cancelled)


# ------------------------------------------------------------------------------------ cancel guard


def test_guard_leaves_quietly_when_the_job_ended():
    from plugin_gimp import cancel_guard

    guard = cancel_guard.spawn("some-job", f"127.0.0.1:{g.free_port()}", "t")
    assert guard is not None
    guard.finish()
    assert guard._proc.wait(20) == 0  # no cancel attempted (it would fail: nothing listens there)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = g.serve_on_tcp(tmp_path_factory.mktemp("daemon-state"))
    yield d
    d.stop()


def test_guard_cancels_the_job_when_the_plugin_is_killed(daemon, portrait):
    """What happens when GIMP's progress Cancel SIGKILLs the plug-in in the middle of a job."""
    import numpy as np

    from pipeline import images

    big = np.resize(images.to_array(portrait, mode="RGB"), (1400, 1400, 3))
    request = client.JobRequest(pixels=big.tobytes(), width=1400, height=1400, channels=3, preset="lite",
                                scale=2.0, seed=1, job_id="guard-test-job", client_name="gimp")
    # a stand-in for the plug-in process: it starts the guard, then waits to be killed
    plugin = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from plugin_gimp import cancel_guard; "
         f"cancel_guard.spawn('guard-test-job', {daemon.address!r}, {daemon.token!r}, 'guard-test-client'); "
         "print('ready', flush=True); time.sleep(600)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert plugin.stdout.readline().strip() == "ready"
        with client.Client(daemon.address, daemon.token, client_id="guard-test-client") as c:  # the plug-in's id
            c.submit(request)
            wait_for(lambda: any(j.job_id == "guard-test-job" and j.state == "running" for j in c.list_jobs()),
                     30, "the job to start")
            plugin.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            events = list(c.watch("guard-test-job"))
        assert events[-1].kind == client.EventKind.cancelled, events[-1]
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
