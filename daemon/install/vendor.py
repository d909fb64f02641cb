"""Vendor grpcio + protobuf wheels for an editor's bundled Python.

Editors ship their own Python (Krita 5: 3.10/3.11, GIMP 3: 3.11–3.13) without grpcio. The plugin
carries the two packages, unpacked from wheels built for that Python and platform, in a ``vendor/``
folder it puts on ``sys.path`` itself. Versions match the ones this install of Dermis runs, so the
generated protobuf code and the runtime agree.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import InstallError

# grpcio (>= 1.7x) imports typing_extensions, which editors' Pythons do not ship either
PACKAGES = ("grpcio", "protobuf", "typing_extensions")


def default_platforms() -> list[str]:
    """Wheel platform tags for this machine, newest first (pip matches them exactly)."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        tags = [f"manylinux_2_{n}_{arch}" for n in (39, 35, 34, 31, 28, 27, 24, 17)]
        return tags + [f"manylinux2014_{arch}", f"manylinux1_{arch}"]
    if sys.platform == "darwin":
        return [sysconfig.get_platform().replace("-", "_").replace(".", "_"), "macosx_11_0_universal2",
                "macosx_10_9_universal2", "macosx_11_0_arm64", "macosx_10_9_x86_64"]
    return ["win_amd64"]


def pinned_requirements(packages: Sequence[str] = PACKAGES) -> list[str]:
    reqs = []
    for name in packages:
        try:
            reqs.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            reqs.append(name)
    return reqs


def download_wheels(
    dest: Path,
    python_version: str,
    platforms: Sequence[str] | None = None,
    packages: Sequence[str] = PACKAGES,
) -> list[Path]:
    """pip download binary wheels for another Python/platform into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for tag in platforms or default_platforms():
        cmd += ["--platform", tag]
    cmd += pinned_requirements(packages)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InstallError(
            "could not download grpcio/protobuf wheels for Python "
            f"{python_version}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    return sorted(dest.glob("*.whl"))


def unpack_wheels(wheels: Sequence[Path], target: Path) -> None:
    """Unzip wheels into ``target`` (a plain folder on the plugin's sys.path)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            for member in z.namelist():
                # refuse anything that would land outside the vendor folder
                dest = (target / member).resolve()
                if not str(dest).startswith(str(target.resolve())):
                    raise InstallError(f"{whl.name} contains an unsafe path: {member}")
            z.extractall(target)


def vendor(
    target: Path,
    python_version: str,
    platforms: Sequence[str] | None = None,
    wheel_dir: Path | None = None,
) -> list[str]:
    """Fill ``target`` with grpcio + protobuf for the given Python; returns the wheel file names."""
    if wheel_dir is not None:
        wheels = sorted(Path(wheel_dir).glob("*.whl"))
        if not wheels:
            raise InstallError(f"no .whl files in {wheel_dir}")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dermis-wheels-"))
        try:
            wheels = download_wheels(tmp, python_version, platforms)
            unpack_wheels(wheels, target)
            return [w.name for w in wheels]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    unpack_wheels(wheels, target)
    return [w.name for w in wheels]
