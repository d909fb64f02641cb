"""`dermis serve`, `dermis status` and `dermis upscale --server` as real processes; graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from daemon.cli import main
from proto.client import Client, EventKind, default_runtime_file

from ._daemon_helpers import ServeProcess, client, raw_image, request, start
from .conftest import REPO


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("XDG_RUNTIME_DIR", None)  # the socket goes next to the runtime file in the test's state dir
    env["DERMIS_DEVICE"] = "cpu"
    return env


@pytest.fixture
def serve(test_presets, tmp_path):
    """Start `python -m daemon serve ARGS` in this test's state folder (so `Client()` and `dermis
    status` find it through the runtime file) and wait until it has published that file."""
    started: list[ServeProcess] = []

    def launch(*args: str) -> ServeProcess:
        state = default_runtime_file().parent.parent
        started.append(ServeProcess(state, *args, env=_env(), log=tmp_path / f"serve{len(started)}.log"))
        return started[-1]

    yield launch
    for s in started:
        s.stop(signal.SIGKILL)


def test_serve_status_upscale_server_and_sigterm(serve, portrait_path, tmp_path):
    srv = serve()
    proc, info = srv.proc, srv.info
    assert info["address"].startswith("unix:") and (default_runtime_file().stat().st_mode & 0o777) == 0o600
    remote, local = tmp_path / "remote.png", tmp_path / "local.png"
    run = subprocess.run([sys.executable, "-m", "daemon", "upscale", str(portrait_path), "-o", str(remote),
                          "--preset", "lite", "--seed", "7", "--server", "auto"],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"on {info['address']}" in run.stdout and "100%" in run.stderr  # the same progress bar
    assert main(["upscale", str(portrait_path), "-o", str(local), "--preset", "lite", "--seed", "7",
                 "--quiet"]) == 0
    assert remote.read_bytes() == local.read_bytes()

    status = subprocess.run([sys.executable, "-m", "daemon", "status", "--all"], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "device: CPU" in status.stdout and "lite" in status.stdout and "cli: 0/0/1/0/0" in status.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    err = srv.log.read_text()
    assert "shutting down" in err and "stopped" in err
    # at start, one line on what the default preset lacks and how to get it
    notice = [x for x in err.splitlines() if x.startswith("dermis: preset supir-srpo lacks ")]
    assert len(notice) == 1 and "`dermis models get supir-srpo`" in notice[0], err[:2000]
    assert not default_runtime_file().exists()
    assert not default_runtime_file().with_name("daemon.sock").exists()


def test_sigterm_cancels_the_running_job_and_tells_its_client(serve):
    proc = serve("--grace", "0.2").proc
    events = []
    with Client() as c:  # finds the daemon through the runtime file
        job_id = c.submit(request(raw_image(384, 384, seed=1), preset="tiles", seed=1))
        for ev in c.watch(job_id):
            events.append(ev)
            if ev.kind is EventKind.progress and ev.step == 1:
                proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    last = events[-1]
    assert last.kind is EventKind.cancelled and "shutting down" in last.message


def test_stop_lets_the_running_job_finish_within_the_grace_time(short_tmp, test_presets):
    d = start(short_tmp)
    with client(d) as c:
        job_id = c.submit(request(raw_image(128, 128, seed=2), preset="tiles", seed=1))
        # stop while this stream is open, as an editor's is: a Watch opened after stop began is
        # refused by the closing server (the client then reports the job lost), which is not the point
        stopper = threading.Thread(target=d.stop, kwargs={"grace": 120.0})
        events = []
        for ev in c.watch(job_id):
            events.append(ev)
            if ev.kind is EventKind.progress and stopper.ident is None:  # not started yet
                stopper.start()
    stopper.join(150)
    assert events[-1].kind is EventKind.done and events[-1].result.width == 128
    assert any("shutting down" in e.message for e in events if e.kind is EventKind.message)
    assert d.queue.closed


def test_status_without_a_daemon_says_how_to_start_one(capsys):
    assert main(["status", "--timeout", "1"]) == 1
    assert "dermis serve" in capsys.readouterr().err


def test_upscale_server_without_a_daemon_fails_clearly(portrait_path, tmp_path, capsys):
    out = tmp_path / "o.png"
    rc = main(["upscale", str(portrait_path), "-o", str(out), "--preset", "lite", "--quiet",
               "--server", f"unix:{tmp_path}/nothing.sock"])
    assert rc == 1 and not out.exists()
    assert "dermis serve" in capsys.readouterr().err


def test_serve_takes_its_settings_from_the_daemon_table_and_the_command_line(tmp_path):
    from daemon.cli import main_parser
    from daemon.cli.serve import server_config

    cfg = tmp_path / "config.toml"
    cfg.write_text('[daemon]\nlisten = "127.0.0.1:50999"\nvram_budget_gb = 1.5\nmax_queue = 4\n'
                   'result_ttl_s = 60\ngrace_s = 5\n')
    sc = server_config(main_parser().parse_args(["serve", "--config", str(cfg)]))
    assert (sc.listen, sc.vram_budget, sc.max_queue, sc.result_ttl, sc.shutdown_grace) == (
        "127.0.0.1:50999", int(1.5 * 2**30), 4, 60.0, 5.0)
    assert sc.runtime_file == default_runtime_file()
    sc = server_config(main_parser().parse_args(["serve", "--config", str(cfg), "--listen", "unix:/tmp/x.sock",
                                                 "--max-queue", "9", "--grace", "1"]))
    assert (sc.listen, sc.max_queue, sc.shutdown_grace) == ("unix:/tmp/x.sock", 9, 1.0)
