"""`dermis install-plugin krita`: put the Krita plugin, the thin client and grpc into pykrita/.

What lands in the pykrita folder::

    dermis_krita.desktop           tells Krita's Python plugin manager about the plugin
    dermis_krita/                  plugin_krita/*.py
    dermis_krita/proto/            proto/ (client + generated code), imported relatively
    dermis_krita/vendor/           grpcio + protobuf unpacked from wheels for Krita's Python
    dermis_krita/INSTALLED.json    every file above, so --uninstall removes exactly those

``--enable`` also sets ``[python] enable_dermis_krita=true`` in kritarc (recorded, and undone by
--uninstall); otherwise the user ticks Dermis in Settings → Configure Krita → Python Plugin Manager.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..errors import InstallError
from . import vendor

MODULE = "dermis_krita"  # the package name in pykrita/, and kritarc's enable_<MODULE>
REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "plugin_krita"
PROTO_SRC = REPO / "proto"
MANIFEST = "INSTALLED.json"
FALLBACK_PYTHON = "3.10"  # the Python bundled with official Krita 5.2 builds (Windows, macOS, AppImage)


# -- where Krita keeps things ----------------------------------------------------------------------
def default_target() -> Path:
    """Krita's per-user pykrita folder."""
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "krita" / "pykrita"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "krita" / "pykrita"
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(data) / "krita" / "pykrita"


def default_kritarc() -> Path:
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "kritarc"
    if sys.platform == "darwin":
        return home / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kritarc"


def detect_python_version() -> tuple[str, str]:
    """(X.Y, how it was found) for the Python embedded in the installed Krita."""
    for lib in _pykrita_libraries():
        try:
            found = re.search(rb"libpython(3\.\d+)", lib.read_bytes())
        except OSError:
            continue
        if found:
            return found.group(1).decode(), f"linked by {lib}"
    for framework in Path("/Applications").glob("krita.app/Contents/Frameworks/Python.framework/Versions/3.*"):
        return framework.name, f"bundled in {framework}"
    for dll in _windows_krita_dirs():
        m = re.fullmatch(r"python3(\d+)\.dll", dll.name)
        if m:
            return f"3.{m.group(1)}", f"bundled in {dll.parent}"
    return FALLBACK_PYTHON, "not detected; the Python of official Krita 5.2 builds"


def _pykrita_libraries() -> list[Path]:
    prefixes = []
    exe = shutil.which("krita")
    if exe:
        prefixes.append(Path(exe).resolve().parent.parent)
    prefixes += [Path("/usr"), Path("/usr/local")]
    out: list[Path] = []
    for p in prefixes:
        out += sorted(p.glob("lib*/kritaplugins/kritapykrita.so"))
        out += sorted(p.glob("lib*/*/kritaplugins/kritapykrita.so"))
    return out


def _windows_krita_dirs() -> list[Path]:
    if sys.platform != "win32":
        return []
    roots = [Path(os.environ.get(v, "")) for v in ("ProgramFiles", "ProgramFiles(x86)") if os.environ.get(v)]
    return [dll for r in roots for dll in r.glob("Krita*/python/python3*.dll")]


# -- install / uninstall ---------------------------------------------------------------------------
def install(args: argparse.Namespace) -> int:
    target = Path(args.target).expanduser() if args.target else default_target()
    pkg = target / MODULE
    previous: dict = {}
    if (pkg / MANIFEST).exists():
        print(f"Replacing the Dermis plugin already in {target}")
        previous = _read_manifest(pkg)
        _remove(target, previous, restore_kritarc=False)
    elif pkg.exists() and any(pkg.iterdir()):
        raise InstallError(f"{pkg} exists but was not installed by dermis (no {MANIFEST}); "
                           "move it away first.")
    target.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    files.append(_copy(PLUGIN_SRC / f"{MODULE}.desktop", target / f"{MODULE}.desktop"))
    for src in sorted(PLUGIN_SRC.glob("*.py")):
        files.append(_copy(src, pkg / src.name))
    for src in sorted(PROTO_SRC.rglob("*.py")):
        rel = src.relative_to(PROTO_SRC)
        if "__pycache__" in rel.parts or src.name == "regen.py":
            continue  # regen.py needs grpc_tools; Krita only needs the client and generated code
        files.append(_copy(src, pkg / "proto" / rel))

    record: dict = {"module": MODULE, "python": None, "platforms": None, "wheels": [],
                    "kritarc": previous.get("kritarc") if previous else None}
    if not args.no_vendor:
        pyver, how = (args.python_version, "given") if args.python_version else detect_python_version()
        platforms = args.platform or vendor.default_platforms()
        where = f"from {args.wheels}" if args.wheels else f"platform {platforms[0]}"
        print(f"Vendoring grpcio + protobuf for Python {pyver} ({how}), {where}…")
        try:
            wheels = vendor.vendor(pkg / "vendor", pyver, platforms,
                                   Path(args.wheels) if args.wheels else None)
        except InstallError:
            _remove(target, {"files": [str(f.relative_to(target)) for f in files]})
            raise
        files += sorted(p for p in (pkg / "vendor").rglob("*") if p.is_file())
        record.update(python=pyver, platforms=list(platforms), wheels=wheels)

    if args.enable:
        rc = default_kritarc()
        if set_kritarc_enabled(rc, True):
            record["kritarc"] = str(rc)
        print(f"Enabled in {rc}")
    record["files"] = [f.relative_to(target).as_posix() for f in files]
    (pkg / MANIFEST).write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"Installed the Dermis plugin in {target} ({len(files)} files).")
    if not args.enable:
        print("Enable it in Krita: Settings → Configure Krita → Python Plugin Manager → Dermis, "
              "then restart Krita.")
    print("Then start the daemon (`dermis serve`) and use Tools → Scripts → Dermis or the Dermis docker.")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    target = Path(args.target).expanduser() if args.target else default_target()
    pkg = target / MODULE
    if not (pkg / MANIFEST).exists():
        raise InstallError(f"no Dermis plugin installed in {target} (no {MODULE}/{MANIFEST}).")
    record = _read_manifest(pkg)
    left = _remove(target, record)
    print(f"Removed the Dermis plugin from {target}.")
    if left:
        print("Left alone (not installed by dermis): " + ", ".join(str(p) for p in left))
    return 0


def _remove(target: Path, record: dict, *, restore_kritarc: bool = True) -> list[Path]:
    """Delete the recorded files, then the folders they leave empty; returns what was left."""
    dirs: set[Path] = {target / MODULE}
    for rel in record.get("files", []):
        path = target / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
        dirs.update(p for p in path.parents if p != target and target in p.parents)
    (target / MODULE / MANIFEST).unlink(missing_ok=True)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):  # deepest first
        if d.is_dir():
            shutil.rmtree(d / "__pycache__", ignore_errors=True)  # written by Krita's Python
            try:
                d.rmdir()
            except OSError:
                pass  # something we did not put there is inside: leave it
    if restore_kritarc and record.get("kritarc"):
        set_kritarc_enabled(Path(record["kritarc"]), False)
        print(f"Disabled in {record['kritarc']}")
    return sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p not in dirs)


def _read_manifest(pkg: Path) -> dict:
    try:
        return json.loads((pkg / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InstallError(f"cannot read {pkg / MANIFEST}: {e}") from None


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return dst


# -- kritarc ---------------------------------------------------------------------------------------
def set_kritarc_enabled(path: Path, enabled: bool) -> bool:
    """Set or remove ``enable_dermis_krita=true`` in the [python] group; True when the file changed.

    Edited line by line rather than with configparser, which would rewrite keys and values of the
    rest of the user's settings (Qt's INI dialect is not configparser's).
    """
    key = f"enable_{MODULE}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    out, section, done, changed = [], None, False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if section == "python" and enabled and not done:
                out.append(f"{key}=true")
                done = changed = True
            section = stripped[1:-1]
        elif section == "python" and stripped.split("=", 1)[0].strip() == key:
            if enabled and stripped == f"{key}=true":
                done = True
            else:
                changed = True
                if enabled:
                    out.append(f"{key}=true")
                    done = True
                continue
        out.append(line)
    if enabled and not done:
        if section == "python":
            out.append(f"{key}=true")
        else:
            out += ([""] if out else []) + ["[python]", f"{key}=true"]
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".dermis-tmp")
        tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return changed
