"""The Krita plugin across Krita restarts and without its gRPC wheels, in real Krita 5 (Debian).

Each test starts its own kritarunner processes (test_krita_editor.py shares one for its many cases);
the restart test also has its own daemon and plugin install, because two Krita processes use one
profile in turn.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests import _krita_helpers as kh

pytestmark = pytest.mark.editor

W, H = 192, 160


@pytest.fixture
def daemon(tmp_path):
    kh.require_krita()
    d = kh.serve(tmp_path / "daemon", presets={"lite-slow": kh.SLOW_PRESET})
    yield d
    d.stop(signal.SIGINT, timeout=15)


@pytest.fixture
def pykrita(tmp_path) -> Path:
    """The plugin installed as a user would, with wheels for the Python Krita embeds."""
    target = tmp_path / "pykrita"
    kh.install_plugin(target, "--wheels", str(kh.wheels_for(kh.krita_python_version())))
    return target


def test_plugin_without_grpc_explains_itself(tmp_path):
    kh.require_krita()
    """Installed with --no-vendor into a Krita whose Python lacks grpcio: a message, not a crash."""
    target = tmp_path / "pykrita"
    kh.install_plugin(target, "--no-vendor")
    env = kh.profile_env(tmp_path / "profile", tmp_path / "state")
    out = tmp_path / "nogrpc.json"
    proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, target], "kr_core", "no_grpc", str(out))
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "crash" not in report, report["crash"]
    assert not report["grpc_importable"]
    assert report["job"]["phase"] == "failed" and report["job"]["code"] == "dependency_missing"
    assert "grpc" in report["job"]["error"].lower()
    assert report["info"]["code"] == "dependency_missing"


def test_krita_closed_mid_run_inserts_the_result_once_when_the_image_is_opened_again(tmp_path, daemon, pykrita):
    """Two Krita processes on one profile: the first starts a run on a saved image and closes while
    the daemon works; the second opens the image, finds the job through ListJobs, inserts it once."""
    out = tmp_path / "restart"
    out.mkdir()
    (out / "u8.raw").write_bytes(kh.bgra_bytes(kh.input_image("U8", W, H)))
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "image": str(out / "u8.raw"), "width": W, "height": H,
                                "selection": [60, 40, 60, 50], "preset": "lite-slow", "kra": str(out / "restart.kra")}))
    env = kh.profile_env(tmp_path / "profile", daemon.state)
    reports = {}
    for step in ("first", "second"):
        proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, pykrita], "kr_restart", step, str(spec), timeout=240)
        f = out / f"{step}.json"
        assert f.exists(), f"{step}: no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        reports[step] = json.loads(f.read_text())
        assert "crash" not in reports[step], reports[step]["crash"]
    a, b = reports["first"], reports["second"]
    assert a["saved"] and a["started"] and a["remembered"] and a["fraction"] < 1.0
    assert a["phase_at_exit"] == "running" and not a["cancel_requested"]  # left to the daemon, not cancelled
    assert len(a["pending"]) == 1 and a["pending"][0]["jobs"][0]["job_id"] == a["job_id"]
    assert b["client_id"] == a["client_id"] and b["pending_before"] == 1
    assert b["layers_opened"] == ["Background", "Selection Mask"]  # the .kra keeps the selection
    assert b["resumed"] and b["error"] == "" and b["run"]["ids"] == [a["job_id"]] and b["run"]["phases"] == ["done"]
    assert b["layers_after"] == ["Background", "Dermis (lite-slow, 7)", "Selection Mask"]
    assert b["pending_after"] == 0 and b["runs_again"] == 0 and b["layers_again"] == b["layers_after"]
    assert b["top_children"] == [["Selection", "transparencymask"]]
    assert b["inside_max_diff"] <= 1  # the composite shows the inserted result
