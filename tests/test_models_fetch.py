"""`dermis models get` against a local stand-in for the Hub (tests/hub_standin.py), through the real
huggingface_hub client and the real CLI: the ComfyUI layout, checksums, licences, gated repos, no
network, a small disk, and a download killed mid-file that resumes. Nothing here reaches the internet:
HF_ENDPOINT and the catalogue's URLs point at 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from daemon.cli import main
from pipeline.fetch import licences
from pipeline.models.catalogue import human_bytes

from ._models_helpers import (
    SDXL,
    SKIN,
    MiB,
    hidden_leftovers,
    sha,
    subprocess_env,
    write_catalogue,
)
from .conftest import REPO, wait_for


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "ComfyUI" / "models"
    root.mkdir(parents=True)
    return root


def _get(models, *extra):
    return main(["models", "get", "fetch-demo", "--comfy-models", str(models), *extra])


def test_get_fills_the_comfy_layout_checks_sha256_and_models_shows_before_and_after(hub, models, capsys):
    assert main(["models", "fetch-demo", "--comfy-models", str(models)]) == 0
    before = capsys.readouterr().out
    assert "missing: upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth" in before
    assert "missing: checkpoints/sd_xl_base_1.0_0.9vae.safetensors" in before
    assert "`dermis models get fetch-demo` downloads 2 of them" in before.splitlines()[-1]

    assert _get(models, "--yes") == 0
    out = capsys.readouterr().out
    skin = models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
    sdxl = models / "checkpoints" / "sd_xl_base_1.0_0.9vae.safetensors"
    assert skin.read_bytes() == SKIN and sdxl.read_bytes() == SDXL
    assert hidden_leftovers(models) == []
    assert "sha256 (catalogue) checked" in out and "sha256 (hub) checked" in out and "Ready: fetch-demo" in out
    # the non-commercial licence was shown and its acceptance remembered, per model
    assert "CC-BY-NC-SA-4.0" in out
    assert licences.unaccepted(_catalogue().for_role("skin_detail")) == []

    assert main(["models", "fetch-demo", "--comfy-models", str(models)]) == 0
    after = capsys.readouterr().out
    assert f"found {skin}" in after and f"found {sdxl}" in after and "Nothing is missing." in after
    # a second get finds everything and fetches nothing
    gets = len(hub.served())
    assert _get(models) == 0 and len(hub.served()) == gets
    assert "every file is found" in capsys.readouterr().out


def test_a_declined_licence_downloads_nothing(hub, models, capsys):
    assert _get(models) == 2  # stdin is not a terminal and no --yes: the question is answered no
    captured = capsys.readouterr()
    assert "CC-BY-NC-SA-4.0" in captured.out and "Accept these licences? no" in captured.out
    assert "were not accepted, so nothing was downloaded" in captured.err and "--yes" in captured.err
    assert hub.requests == [] and not any(models.rglob("*.*"))


def test_a_wrong_sha256_is_refused_and_nothing_is_left(hub, models, capsys):
    hub.tamper[sha(SKIN)] = bytes(len(SKIN))  # same size, other bytes: only the sha256 can tell
    assert _get(models, "--yes") == 1
    err = capsys.readouterr().err
    assert "1x-ITF-SkinDiffDetail-Lite-v1.pth is damaged or not the expected file" in err and sha(SKIN) in err
    assert not (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").exists()
    assert hidden_leftovers(models) == []


def test_a_hub_file_that_changed_upstream_is_refused_before_downloading(hub, models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DERMIS_CATALOGUE", str(write_catalogue(tmp_path / "other.toml", hub, supir_sha="0" * 64)))
    assert main(["models", "get", "supir_v0q", "--comfy-models", str(models), "--yes"]) == 1
    assert "is not the file the catalogue names" in capsys.readouterr().err
    assert hub.served("cdn") == [] and not any(models.rglob("*.safetensors"))


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_repo_gets_one_sentence_and_a_stored_login_opens_it(hub, models, tmp_path, status, capsys):
    import huggingface_hub.constants as hc

    hub.gated["test-org/flux-gated"] = status
    args = ["models", "get", "fetch-gated", "--comfy-models", str(models), "--yes"]
    assert main(args) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("dermis: error:"))
    assert line == ("dermis: error: test-org/flux-gated is gated: accept its licence on "
                    "https://huggingface.co/test-org/flux-gated while logged in, log in here (`hf auth login`, "
                    "or set HF_TOKEN), and try again.")
    # after `hf auth login` (the stored token file) the same command downloads it
    (tmp_path / "hf-token").write_text(hub.token)
    assert hc.HF_TOKEN_PATH == str(tmp_path / "hf-token")
    assert main(args) == 0
    heads = hub.served("hub", "HEAD")
    assert heads[-1].authorization == f"Bearer {hub.token}"
    assert all(r.authorization == "" for r in hub.served("cdn"))  # the token never leaves the Hub


def test_no_network_is_a_clear_error_and_exit_status(hub, models, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert main(["models", "get", "sdxl", "--comfy-models", str(models), "--yes"]) == 1
    err = capsys.readouterr().err
    assert f"Cannot reach 127.0.0.1:{port} to download sd_xl_base_1.0_0.9vae.safetensors" in err
    assert "check the network connection" in err

    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1: huggingface_hub's own switch
    assert main(["models", "get", "sdxl", "--comfy-models", str(models), "--yes"]) == 1
    assert "Downloads are switched off (HF_HUB_OFFLINE is set)" in capsys.readouterr().err
    assert not any(models.rglob("*.safetensors"))


def test_a_disk_too_small_is_refused_before_downloading(hub, models, monkeypatch, capsys):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=4 * MiB))
    assert _get(models, "--yes") == 1
    err = capsys.readouterr().err
    assert f"The downloads need {human_bytes(len(SKIN) + len(SDXL))} and" in err
    assert f"has {human_bytes(4 * MiB)} free" in err
    assert hub.served("cdn") == [] and hub.served("hub", "GET") == []  # asked for sizes, fetched nothing
    assert hidden_leftovers(models) == []


def test_more_than_the_large_limit_is_asked_for_first(hub, models, monkeypatch, capsys):
    from pipeline.fetch import run

    monkeypatch.setattr(run, "LARGE_BYTES", MiB)
    licences.accept(_catalogue().for_role("skin_detail"))
    assert _get(models) == 1  # not a terminal: "no"
    assert f"Download {human_bytes(len(SKIN) + len(SDXL))} into" in capsys.readouterr().out
    assert hub.served("cdn") == []


def test_a_download_killed_mid_file_resumes_where_it_stopped(hub, models, tmp_path):
    """`dermis models get` as a real process, killed (SIGKILL) while the stand-in holds the first file
    half-sent; the next run asks only for the rest (Range) and ends with the exact bytes."""
    hub.stall_after = 2 * MiB
    env = subprocess_env(hub, tmp_path / "catalogue.toml", tmp_path / "hf")
    part = models / "upscale_models" / ".1x-ITF-SkinDiffDetail-Lite-v1.pth.download.part"
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "models", "get", "fetch-demo", "--yes",
                             "--comfy-models", str(models)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: part.exists() and part.stat().st_size >= 2 * MiB, 120, "half the file on disk")
    finally:
        proc.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=30)[0].decode()
    kept = part.stat().st_size
    assert 0 < kept < len(SKIN), out
    assert not (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").exists()
    hub.stall_after = None
    hub.release.set()

    assert _get(models, "--yes") == 0
    assert (models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").read_bytes() == SKIN
    resumed = [r for r in hub.served("cdn") if r.range][-1]
    assert resumed.range == f"bytes={kept}-" and resumed.sent == len(SKIN) - kept
    assert hidden_leftovers(models) == []  # the partial file and its marker are gone


def _catalogue():
    from pipeline.models.catalogue import catalogue

    return catalogue()
