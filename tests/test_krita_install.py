"""`dermis install-plugin krita`: files, vendoring, kritarc, uninstall (no network, no Krita needed).

Wheels here are small real zip files built by the test, so unpacking and the manifest are exercised
for real; that the true grpcio/protobuf wheels work inside Krita is proven by test_krita_editor.py.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.install import krita as install_krita

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def wheels(tmp_path) -> Path:
    d = tmp_path / "wheels"
    d.mkdir()
    for name, files in (("grpcio-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", {"grpc/__init__.py": "X = 1\n"}),
                        ("protobuf-1.0-py3-none-any.whl", {"google/protobuf/__init__.py": "",
                                                           "protobuf-1.0.dist-info/METADATA": "Name: protobuf\n"})):
        with zipfile.ZipFile(d / name, "w") as z:
            for path, text in files.items():
                z.writestr(path, text)
    return d


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_install_copies_plugin_client_and_wheels_then_uninstall_removes_exactly_that(tmp_path, wheels):
    target = tmp_path / "pykrita"
    target.mkdir()
    (target / "other_plugin.desktop").write_text("[Desktop Entry]\n")  # someone else's
    assert main(["install-plugin", "krita", "--target", str(target), "--wheels", str(wheels),
                 "--python-version", "3.11"]) == 0
    files = _tree(target)
    pkg = "dermis_krita"
    for f in ("dermis_krita.desktop", f"{pkg}/__init__.py", f"{pkg}/extension.py", f"{pkg}/document.py",
              f"{pkg}/jobs.py", f"{pkg}/docker.py", f"{pkg}/proto/__init__.py", f"{pkg}/proto/client.py",
              f"{pkg}/vendor/grpc/__init__.py", f"{pkg}/vendor/google/protobuf/__init__.py", f"{pkg}/INSTALLED.json"):
        assert f in files, f
    assert not any("regen.py" in f or "__pycache__" in f for f in files)
    desktop = (target / "dermis_krita.desktop").read_text()
    assert "X-KDE-Library=dermis_krita" in desktop and "ServiceTypes=Krita/PythonPlugin" in desktop
    record = json.loads((target / pkg / "INSTALLED.json").read_text())
    assert record["python"] == "3.11" and len(record["wheels"]) == 2
    assert set(record["files"]) == files - {f"{pkg}/INSTALLED.json", "other_plugin.desktop"}

    # Krita's Python leaves caches behind; a user's own file in the folder must survive
    (target / pkg / "__pycache__").mkdir()
    (target / pkg / "__pycache__" / "jobs.cpython-311.pyc").write_bytes(b"")
    (target / pkg / "notes.txt").write_text("mine")
    assert main(["install-plugin", "krita", "--target", str(target), "--uninstall"]) == 0
    assert _tree(target) == {"other_plugin.desktop", f"{pkg}/notes.txt"}
    (target / pkg / "notes.txt").unlink()
    assert main(["install-plugin", "krita", "--target", str(target), "--uninstall"]) == 1  # nothing there


def test_reinstall_replaces_and_a_foreign_folder_is_refused(tmp_path, wheels, capsys):
    target = tmp_path / "pykrita"
    args = ["install-plugin", "krita", "--target", str(target), "--wheels", str(wheels)]
    assert main(args) == 0 and main(args) == 0
    assert (target / "dermis_krita" / "vendor" / "grpc" / "__init__.py").exists()
    other = tmp_path / "other"
    (other / "dermis_krita").mkdir(parents=True)
    (other / "dermis_krita" / "mine.py").write_text("")
    assert main(["install-plugin", "krita", "--target", str(other), "--wheels", str(wheels)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dermis: error: ") and "not installed by dermis" in err
    assert (other / "dermis_krita" / "mine.py").exists() and _tree(other) == {"dermis_krita/mine.py"}


def test_no_vendor_installs_only_the_plugin(tmp_path):
    target = tmp_path / "pykrita"
    assert main(["install-plugin", "krita", "--target", str(target), "--no-vendor"]) == 0
    assert not (target / "dermis_krita" / "vendor").exists()


def test_enable_edits_only_its_own_kritarc_line(tmp_path, wheels, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    rc = tmp_path / "config" / "kritarc"
    rc.parent.mkdir()
    original = "[General]\nfoo=a=b, c\n\n[python]\nenable_other=true\n\n[Zed]\nx=1\n"
    rc.write_text(original)
    target = tmp_path / "pykrita"
    assert main(["install-plugin", "krita", "--target", str(target), "--wheels", str(wheels), "--enable"]) == 0
    text = rc.read_text()
    assert "enable_dermis_krita=true" in text.split("[Zed]")[0].split("[python]")[1]
    assert "foo=a=b, c" in text and "enable_other=true" in text
    assert main(["install-plugin", "krita", "--target", str(target), "--uninstall"]) == 0
    assert "dermis" not in rc.read_text() and "enable_other=true" in rc.read_text()


def test_kritarc_without_python_group_or_file(tmp_path):
    rc = tmp_path / "kritarc"
    assert install_krita.set_kritarc_enabled(rc, True)
    assert rc.read_text() == "[python]\nenable_dermis_krita=true\n"
    assert not install_krita.set_kritarc_enabled(rc, True)  # already so: untouched
    rc.write_text("[python]\nenable_dermis_krita=false\n")
    assert install_krita.set_kritarc_enabled(rc, True)
    assert rc.read_text() == "[python]\nenable_dermis_krita=true\n"


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"XDG_DATA_HOME": "/x/data"}, "/x/data/krita/pykrita"),
    ("win32", {"APPDATA": "C:/Users/u/AppData/Roaming"}, "C:/Users/u/AppData/Roaming/krita/pykrita"),
    ("darwin", {}, "{home}/Library/Application Support/krita/pykrita"),
])
def test_default_target_per_platform(monkeypatch, tmp_path, platform, env, expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert install_krita.default_target().as_posix() == expected.format(home=tmp_path.as_posix())


def test_bad_wheel_folder_is_a_clear_error_and_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "pykrita"
    (tmp_path / "empty").mkdir()
    assert main(["install-plugin", "krita", "--target", str(target), "--wheels", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dermis: error: ") and "no .whl files" in err
    assert _tree(target) == set()
