"""`dermis install-plugin gimp`: copy the GIMP 3 plug-in, the thin client and its wheels into GIMP.

What lands in ``<plug-ins>/dermis/`` (GIMP 3 only loads ``plug-ins/<name>/<name>.py``, executable):

    dermis.py            plugin_gimp/launcher.py, chmod +x
    plugin_gimp/         the plug-in package
    plugin_gimp/proto/   the thin client + generated code (the plug-in imports it relatively)
    vendor/              grpcio + protobuf unpacked from wheels for GIMP's Python (daemon/install/vendor.py)
    .dermis-install.json what was installed; --uninstall removes only folders carrying it
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import InstallError
from . import vendor

REPO = Path(__file__).resolve().parents[2]
NAME = "dermis"  # folder and launcher name inside plug-ins/
MARKER = ".dermis-install.json"
# what the plug-in needs from proto/: the client and the generated code, not the code generator
PROTO_SKIP = {"regen.py"}
# GIMP 3.0's Windows installer bundles Python 3.12 (reference/editors.md §3)
WINDOWS_PYTHON = "3.12"


def default_target(system: str | None = None, home: Path | None = None,
                   env: Mapping[str, str] | None = None) -> Path:
    """GIMP 3's per-user plug-ins folder on this OS (no admin rights needed)."""
    system = system or platform.system()
    home = home or Path.home()
    env = os.environ if env is None else env
    if system == "Windows":
        base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        return base / "GIMP" / "3.0" / "plug-ins"
    if system == "Darwin":
        return home / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"
    native = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "GIMP" / "3.0"
    flatpak = home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0"
    # a Flatpak GIMP keeps its profile in its sandbox; use it when it is the only GIMP 3 profile
    if flatpak.is_dir() and not native.is_dir():
        return flatpak / "plug-ins"
    return native / "plug-ins"


def detect_python_version(system: str | None = None) -> str:
    """The X.Y of the Python GIMP 3 runs plug-ins with, as far as this machine tells."""
    system = system or platform.system()
    if system == "Linux":
        # plug-ins start through their `#!/usr/bin/env python3` line: the python3 on PATH
        exe = shutil.which("python3")
        if exe:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        return "{}.{}".format(*sys.version_info[:2])
    if system == "Windows":
        roots = [os.environ.get("ProgramFiles", r"C:\Program Files"),
                 os.path.join(os.environ.get("LOCALAPPDATA", ""), "Programs")]
        for root in roots:
            for dll in sorted(glob.glob(os.path.join(root, "GIMP 3*", "bin", "python3*.dll"))):
                digits = Path(dll).stem.removeprefix("python")  # python312 -> 312
                if len(digits) >= 3 and digits.isdigit():
                    return f"{digits[0]}.{digits[1:]}"
        return WINDOWS_PYTHON
    if system == "Darwin":
        for lib in sorted(glob.glob("/Applications/GIMP*.app/Contents/Resources/lib/python3.*")):
            return Path(lib).name.removeprefix("python")
        raise InstallError(
            "could not find GIMP.app's Python; pass --python-version X.Y (GIMP's "
            "Filters → Development → Python-Fu → Console prints it on its first line)."
        )
    return "{}.{}".format(*sys.version_info[:2])


def _proto_files() -> list[Path]:
    root = REPO / "proto"
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts and p.name not in PROTO_SKIP]
    if not (root / "client.py").is_file():
        raise InstallError(f"{root / 'client.py'} is missing: this Dermis checkout has no thin client.")
    return sorted(files)


def build_tree(dest: Path) -> None:
    """Lay the plug-in out in ``dest`` (which must not exist yet); no wheels."""
    pkg = dest / "plugin_gimp"
    pkg.mkdir(parents=True)
    for src in sorted((REPO / "plugin_gimp").glob("*.py")):
        if src.name != "launcher.py":
            shutil.copy2(src, pkg / src.name)
    for src in _proto_files():
        rel = src.relative_to(REPO / "proto")
        (pkg / "proto" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, pkg / "proto" / rel)
    launcher = dest / f"{NAME}.py"
    shutil.copy2(REPO / "plugin_gimp" / "launcher.py", launcher)
    launcher.chmod(0o755)  # GIMP only runs executable plug-ins (a no-op on Windows, where it need not)


def _is_ours(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def install(args: argparse.Namespace) -> int:
    target = Path(args.target).expanduser() if args.target else default_target()
    dest = target / NAME
    if dest.exists() and not _is_ours(dest):
        raise InstallError(f"{dest} exists but was not installed by Dermis; move it away first.")
    py = args.python_version or detect_python_version()
    target.mkdir(parents=True, exist_ok=True)
    # build next to the final place, then swap: a failed download leaves the old install working
    staging = target / f".{NAME}-installing"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        build_tree(staging)
        wheels: list[str] = []
        if not args.no_vendor:
            wheels = vendor.vendor(staging / "vendor", py, args.platform,
                                   Path(args.wheels) if args.wheels else None)
        (staging / MARKER).write_text(json.dumps(
            {"plugin": "gimp", "python": py, "wheels": wheels, "vendored": not args.no_vendor}, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except (OSError, InstallError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"could not install the GIMP plug-in into {target}: {e}") from None
    what = f"grpcio/protobuf for Python {py} ({', '.join(wheels)})" if wheels else "no wheels (--no-vendor)"
    print(f"Installed the GIMP 3 plug-in into {dest} with {what}.")
    print("Restart GIMP, start the daemon (`dermis serve`), then use Filters → Enhance → Dermis → Refine skin…")
    if getattr(args, "enable", False):
        print("(--enable is for Krita: GIMP loads every plug-in in its plug-ins folder by itself.)")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    target = Path(args.target).expanduser() if args.target else default_target()
    dest = target / NAME
    if not dest.exists():
        print(f"Nothing to remove: {dest} does not exist.")
        return 0
    if not _is_ours(dest):
        raise InstallError(f"{dest} was not installed by Dermis ({MARKER} missing); not touching it.")
    shutil.rmtree(dest)
    print(f"Removed the GIMP plug-in from {dest}. Restart GIMP to drop its menu entry.")
    return 0
