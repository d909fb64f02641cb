"""Running real GIMP 3.0.4 (a Debian 13 chroot) against a real Dermis daemon on this host.

The chroot is built by tools/setup.d/20-gimp.sh (the same script `make editors` runs) in a cache
folder outside the clone. Nothing here skips: if the chroot cannot be built or GIMP does not run,
the test fails and says why. The chroot shares the host's network namespace, so the plug-in inside
reaches the daemon at 127.0.0.1:PORT.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from ._daemon_helpers import ServeProcess
from ._xvfb import free_display
from .conftest import REPO

CHROOT = Path(os.environ.get("DERMIS_GIMP_CHROOT", "/var/cache/dermis/gimp-trixie"))
SETUP = REPO / "tools" / "setup.d" / "20-gimp.sh"
DRIVER = Path(__file__).parent / "gimp" / "driver.py"
PRESS_KEYS = Path(__file__).parent / "gimp" / "press_keys.sh"
DIALOG_TITLE = "Dermis: refine skin"  # plugin_gimp/dialog.py
PLUGIN_HOME = ".config/GIMP/3.0/plug-ins"  # under $HOME inside the chroot
GIMP_TIMEOUT = 240  # s for one gimp-console session (a cold one takes ~7 s here)


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def ensure_chroot() -> Path:
    """The ready chroot; builds it with the setup script when missing. Fails (never skips) on error."""
    if not (CHROOT / ".dermis-gimp-ready").is_file():
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"could not build the GIMP 3 chroot with {SETUP.name} (rc {proc.returncode}):\n"
                        f"{(proc.stdout + proc.stderr)[-3000:]}", pytrace=False)
    if not (CHROOT / "usr/bin/gimp-console-3.0").exists():
        pytest.fail(f"{CHROOT} has no gimp-console-3.0 although it is marked ready; delete it and "
                    f"re-run {SETUP}", pytrace=False)
    return CHROOT


def gimp_python_version(root: Path) -> str:
    """X.Y of the chroot's python3 (the one GIMP starts plug-ins with)."""
    libs = sorted((root / "usr/lib").glob("python3.*"))
    versions = [p.name.removeprefix("python") for p in libs if (p / "os.py").exists()]
    if not versions:
        pytest.fail(f"no python3 in {root}/usr/lib", pytrace=False)
    return versions[-1]


@contextlib.contextmanager
def mounted(root: Path):
    """/proc and a tmpfs /dev/shm inside the chroot (GIMP passes tiles to plug-ins through shm).

    Host /dev is never bind-mounted: the chroot's own device nodes suffice, and a forgotten bind
    mount would put host files under a folder someone may rm -rf.
    """
    done = []
    for target, args in ((root / "proc", ["-t", "proc", "proc"]),
                         (root / "dev/shm", ["-t", "tmpfs", "-o", "mode=1777", "shm"])):
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
            subprocess.run(_sudo() + ["mount", *args, str(target)], check=True)
            done.append(target)
    try:
        yield root
    finally:
        for target in reversed(done):
            subprocess.run(_sudo() + ["umount", str(target)], check=False)


def wheel_dir(python_version: str) -> Path:
    """grpcio + protobuf wheels for the chroot's Python, downloaded once and kept with the chroot."""
    from daemon.errors import InstallError
    from daemon.install import vendor

    pins = "-".join(r.replace("==", "") for r in vendor.pinned_requirements())
    # next to the chroot when we may write there (root), else in the user's own cache
    base = CHROOT.parent if os.access(CHROOT.parent, os.W_OK) else Path.home() / ".cache" / "dermis"
    cache = base / "wheels" / f"cp{python_version.replace('.', '')}-{pins}"
    if not any(cache.glob("*.whl")):
        tmp = cache.with_name(cache.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            vendor.download_wheels(tmp, python_version)
        except InstallError as e:
            pytest.fail(f"could not download grpcio/protobuf wheels for the chroot's Python: {e}",
                        pytrace=False)
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    return cache


class Workdir:
    """A scratch folder inside the chroot: host path ``.host``, chroot path ``.inside``."""

    def __init__(self, root: Path) -> None:
        self.inside = Path("/work") / uuid.uuid4().hex[:12]
        self.host = root / self.inside.relative_to("/")
        subprocess.run(_sudo() + ["mkdir", "-p", str(self.host / "home"), str(self.host / "out")],
                       check=True)
        if os.geteuid() != 0:
            subprocess.run(_sudo() + ["chown", "-R", f"{os.getuid()}:{os.getgid()}", str(self.host)],
                           check=True)

    def path(self, rel: str) -> tuple[Path, str]:
        return self.host / rel, str(self.inside / rel)

    def remove(self) -> None:
        subprocess.run(_sudo() + ["rm", "-rf", "--one-file-system", str(self.host)], check=False)


def install_plugin(work: Workdir, python_version: str, *, vendored: bool = True) -> Path:
    """`dermis install-plugin gimp` into the chroot user's plug-ins folder, as a user would."""
    from daemon.cli import main

    target = work.host / "home" / PLUGIN_HOME
    argv = ["install-plugin", "gimp", "--target", str(target), "--python-version", python_version]
    argv += ["--wheels", str(wheel_dir(python_version))] if vendored else ["--no-vendor"]
    rc = main(argv)
    assert rc == 0, f"install-plugin gimp failed with {rc}"
    return target / "dermis"


def run_gimp(root: Path, work: Workdir, spec: dict, env: dict[str, str] | None = None,
             timeout: float = GIMP_TIMEOUT, keys: list[str] | None = None) -> subprocess.Popen:
    """Start GIMP on the batch driver with ``spec``; returns the running process.

    Without ``keys``: gimp-console, no display. With ``keys``: the GIMP GUI under Xvfb, and
    press_keys.sh playing those steps (``dialog:KEY``, ``file:PATH``, ``window:TITLE:KEY``).
    """
    spec_host, spec_inside = work.path("spec.json")
    spec_host.write_text(json.dumps(spec))
    shutil.copy(DRIVER, work.host / "driver.py")
    shutil.copy(PRESS_KEYS, work.host / "press_keys.sh")
    variables = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work.inside / "home"),
        "DERMIS_GIMP_SPEC": spec_inside, "DERMIS_GIMP_OUT": str(work.inside / "out"),
    }
    variables.update(env or {})
    batch = "--batch-interpreter=python-fu-eval -b - --quit < driver.py"
    if keys:
        answer = " ".join(shlex.quote(k) for k in keys)
        variables["DIALOG_TITLE"] = DIALOG_TITLE
        inner = (f"cd {work.inside} && xvfb-run -n {free_display()} -s '-screen 0 1280x1024x24' bash -c "
                 + shlex.quote(f"(bash press_keys.sh {answer} &); "
                               f"exec timeout {int(timeout)} gimp-3.0 -d -f {batch}"))
    else:
        # no X server: GIMP's script-fu interpreter still looks for one and warns
        variables["DISPLAY"] = ""
        inner = f"cd {work.inside} && exec timeout {int(timeout)} gimp-console-3.0 -i -d -f {batch}"
    cmd = _sudo() + ["chroot", str(root), "env", "-i"] + [f"{k}={v}" for k, v in variables.items()]
    cmd += ["bash", "-c", inner]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish_gimp(proc: subprocess.Popen, work: Workdir, timeout: float = GIMP_TIMEOUT + 30) -> list[dict]:
    """Wait for gimp-console and return the driver's results (fails with GIMP's output if none)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"gimp-console did not finish in {timeout} s:\n{out[-4000:]}", pytrace=False)
    results = work.host / "out" / "results.json"
    if proc.returncode != 0 or not results.is_file():
        pytest.fail(f"gimp-console exited {proc.returncode} without results:\n{out[-4000:]}", pytrace=False)
    data = json.loads(results.read_text())
    for rec in data:
        rec["_log"] = out
        if "driver_error" in rec:
            pytest.fail(f"the GIMP driver failed on case {rec['name']}:\n{rec['driver_error']}\n"
                        f"GIMP output:\n{out[-3000:]}", pytrace=False)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_on_tcp(state_dir: Path, presets: dict[str, str] | None = None) -> ServeProcess:
    """`dermis serve` on 127.0.0.1 (a port the OS picks), with its own state folder, runtime file and
    token: what GIMP's plug-in (in the chroot) reaches over TCP. ``presets``: name -> TOML text of
    user presets it loads besides the built-in ones."""
    env = None
    if presets:
        config = state_dir / "config"
        for name, text in presets.items():
            path = config / "dermis" / "presets" / f"{name}.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    return ServeProcess(state_dir, "--listen", "127.0.0.1:0", env=env, timeout=60)


def set_shortcuts(work: Workdir, shortcuts: dict[str, str]) -> None:
    """Keyboard shortcuts in the chroot user's GIMP profile (shortcutsrc, as Edit → Keyboard
    Shortcuts saves them): action name -> accelerator such as '<Primary><Shift>F9'."""
    path = work.host / "home" / ".config" / "GIMP" / "3.0" / "shortcutsrc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("(file-version 1)\n" + "".join(f'(action "{a}" "{k}")\n' for a, k in shortcuts.items()))
