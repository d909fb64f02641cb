"""'Download missing models…' in the real editors: Krita 5 (kritarunner, the plugin's controller) and
GIMP 3 (gimp-console, the plug-in's download procedure through the PDB), each against a real
`dermis serve` that downloads from the Hub stand-in on 127.0.0.1 (tests/hub_standin.py) into its own
models folder. Nothing reaches the internet."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from . import _gimp_helpers as g
from . import _krita_helpers as kh
from ._daemon_helpers import ServeProcess
from ._models_helpers import SDXL, SKIN, hidden_leftovers, subprocess_env
from .conftest import REPO

pytestmark = [pytest.mark.editor, pytest.mark.slow]
DOWNLOAD_PROC = "plug-in-dermis-download-models"  # plugin_gimp/models.py


def _serve(hub, root: Path, *args: str) -> tuple[ServeProcess, Path]:
    """`dermis serve` that fetches from the stand-in; its models folder (Dermis's own, empty)."""
    env = subprocess_env(hub, Path(os.environ["DERMIS_CATALOGUE"]), root / "hf")
    runtime = root / "run"
    runtime.mkdir(parents=True)
    runtime.chmod(0o700)
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_DATA_HOME=str(root / "data"), PYTHONPATH=str(REPO))
    d = ServeProcess(root / "state", "--grace", "2", *args, env=env, log=root / "daemon.log", timeout=90)
    return d, root / "data" / "dermis" / "models"


def _check_downloaded(models: Path) -> None:
    assert (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").read_bytes() == SKIN
    assert (models / "checkpoints" / "sd_xl_base_1.0_0.9vae.safetensors").read_bytes() == SDXL
    assert hidden_leftovers(models) == []


def test_krita_docker_controller_plans_stops_and_downloads(hub, tmp_path):
    kh.require_krita()
    pykrita = tmp_path / "profile" / "home" / ".local/share" / "krita" / "pykrita"
    kh.install_plugin(pykrita, "--wheels", str(kh.wheels_for(kh.krita_python_version())))
    d, models = _serve(hub, tmp_path / "daemon")
    hub.throttle_s = 0.03  # ~2 MiB/s until the driver has pressed Stop
    unthrottle = tmp_path / "unthrottle"
    stop = threading.Event()

    def watch_for_unthrottle() -> None:
        while not stop.wait(0.02):
            if unthrottle.exists():
                hub.throttle_s = 0.01  # ~6 MiB/s: quick, still several progress events per file
                return

    threading.Thread(target=watch_for_unthrottle, daemon=True).start()
    try:
        out = tmp_path / "report.json"
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"out": str(out), "preset": "fetch-demo", "unthrottle": str(unthrottle)}))
        env = kh.profile_env(tmp_path / "profile", d.state)
        proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, pykrita], "kr_models", "main", str(spec), timeout=300)
    finally:
        stop.set()
        d.stop()
    assert out.exists(), f"kritarunner wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert "crash" not in r, r["crash"] + "\n" + d.tail()
    assert r["server_text"].startswith("Connected: Dermis") and "skin_detail" in r["missing_before"]
    assert r["plan_downloads"] == ["skin_detail", "sdxl"] and "non-commercial" in r["plan"]
    assert r["plan_call_s"] < 0.2 and r["start_call_s"] < 0.2  # the UI thread never waits for the daemon
    assert r["stopped"]["phase"] == "cancelled" and "resumes" in r["stopped"]["message"], r["stopped"]
    done = r["done"]
    assert done["phase"] == "done" and done["error"] == "" and done["message"].startswith("Models downloaded")
    assert any(t.startswith("sdxl: sd_xl_base_1.0_0.9vae.safetensors (file 2 of 2): ") for t in done["texts"])
    assert "skin_detail" not in r["missing_after"] and "sdxl" not in r["missing_after"]
    assert r["max_gap_s"] < 1.0, r["max_gap_s"]  # waits happen on worker threads
    _check_downloaded(models)
    ranges = [x.range for x in hub.served("cdn") if x.range]
    assert len(ranges) == 1 and ranges[0].startswith("bytes=")  # the stopped file was resumed, not restarted


def test_gimp_download_procedure_refuses_without_the_licence_yes_then_downloads(hub, tmp_path):
    root = g.ensure_chroot()
    d, models = _serve(hub, tmp_path / "daemon", "--listen", "127.0.0.1:0")
    try:
        with g.mounted(root):
            work = g.Workdir(root)
            try:
                g.install_plugin(work, g.gimp_python_version(root))
                layer = {"name": "Background", "file": "", "w": 0, "h": 0, "offset": [0, 0], "alpha": False}
                raw, inside = work.path("bg.raw")
                raw.write_bytes(bytes(32 * 24 * 3))
                layer.update(file=inside, w=32, h=24, format="R'G'B' u8")
                args = {"preset": "fetch-demo", "server": d.address, "token": d.token}
                cases = [dict(name=name, proc=DOWNLOAD_PROC, base="rgb", depth="u8", width=32, height=24,
                              layers=[layer], source=0, selection=None, args={**args, **extra},
                              read_format="R'G'B'A u8", result_format="R'G'B'A u8", mask_format="Y u8")
                         for name, extra in (("no_licence_yes", {}), ("download", {"accept-licences": True}))]
                results = g.finish_gimp(g.run_gimp(root, work, {"cases": cases}), work)
            finally:
                work.remove()
    finally:
        d.stop()
    refused, fetched = results
    assert refused["menu"][0] == "Download missing models…" and refused["menu"][1] == ["<Image>/Filters/Enhance/Dermis"]
    assert refused["status"] == "execution-error" and "were not accepted" in refused["error"], refused
    assert fetched["status"] == "success", fetched.get("error")
    _check_downloaded(models)
