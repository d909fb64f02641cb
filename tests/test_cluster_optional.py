"""Ray is an optional extra: without --ray (or a [cluster] address) the daemon never imports it, and
the [cluster] table is checked like the rest of the config."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from daemon.cluster.settings import ClusterSettings, from_config
from pipeline import InvalidParameter

from .conftest import REPO

NO_RAY = """
import sys, tempfile, os
from daemon.cli.entry import main_parser
from daemon.cli.serve import server_config
from daemon.server.start import start_server
args = main_parser().parse_args(["serve", "--listen", "unix:" + os.path.join(tempfile.mkdtemp(dir="/tmp"), "d.sock")])
config = server_config(args)
config.runtime_file = None
assert config.cluster is None
_, daemon = start_server(config)
daemon.stop(grace=1.0)
print("ray imported" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "no ray")
"""


def test_the_daemon_without_ray_never_imports_it():
    run = subprocess.run([sys.executable, "-c", NO_RAY], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "no ray"
    # negative control: the same check sees Ray once the cluster modules are imported
    probe = "import sys, daemon.cluster.pool; print('ray' in sys.modules)"
    seen = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert seen.stdout.strip() == "True", seen.stderr


def test_cluster_settings_from_the_command_line_and_the_config():
    assert from_config({}, None, None) is None
    s = from_config({"address": "10.0.0.1:6379", "resource": "dermis_worker", "local_fallback": True}, None, 3)
    assert s == ClusterSettings(address="10.0.0.1:6379", resource="dermis_worker", workers=3, local_fallback=True)
    assert from_config({"address": "10.0.0.1:6379"}, "auto", None).address == "auto"  # --ray wins
    with pytest.raises(InvalidParameter, match="unknown key"):
        from_config({"adress": "auto"}, None, None)
    with pytest.raises(InvalidParameter, match="workers and retries"):
        from_config({}, "auto", -1)


def test_serve_accepts_ray_and_workers():
    from daemon.cli.entry import main_parser

    args = main_parser().parse_args(["serve", "--ray", "auto", "--workers", "2"])
    assert isinstance(args, argparse.Namespace) and (args.ray, args.workers) == ("auto", 2)


WATCH_NO_RAY = """
import sys, tempfile
from daemon.cli.entry import main
folder = tempfile.mkdtemp(dir="/tmp")
assert main(["watch", folder, "--out", folder + "/out", "--preset", "lite", "--once", "--stable", "0.1"]) == 0
print("ray imported" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "no ray")
"""


def test_dermis_watch_without_ray_never_imports_it_and_workers_needs_ray(tmp_path, capsys):
    from daemon.cli.entry import main

    run = subprocess.run([sys.executable, "-c", WATCH_NO_RAY], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "no ray"
    (tmp_path / "in").mkdir()
    assert main(["watch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2"]) != 0
    assert "--workers needs --ray ADDRESS" in capsys.readouterr().err
