"""Helpers for the real-Krita tests: a throw-away Krita profile, the installed plugin, the daemon.

Nothing here stands in for Krita or the daemon: Krita is Debian's (tools/setup.d/10-krita.sh), the
plugin is installed by `dermis install-plugin krita` with real grpcio/protobuf wheels for Krita's
Python, and the daemon is `python -m daemon serve` as a separate process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ._daemon_helpers import ServeProcess
from ._xvfb import free_display

REPO = Path(__file__).resolve().parent.parent
KRITA_TESTS = Path(__file__).resolve().parent / "krita"
WHEEL_CACHE = REPO / ".cache" / "krita-wheels"  # downloaded once, reused by later runs (gitignored)
# a user preset that is slow on purpose (20 short stages, each a cancel point and each sending a
# preview), for queueing, Cancel and previews; the daemon loads it like any user preset
SLOW_PRESET = "\n".join(
    ['name = "lite-slow"', 'label = "lite-slow"', 'description = "test: lite, repeated"', "scale = 1.0",
     "context = 32", "feather = 8"]
    + [f'[[stage]]\nid = "texture{i}"\nkind = "skin_texture"\nstrength = 0.01\nface_only = true'
       for i in range(20)]
)


def require_krita() -> None:
    """Editor tests fail (never skip) when Krita is not installed, saying how to install it."""
    missing = [b for b in ("krita", "kritarunner", "xvfb-run") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the Krita tests need Debian's krita and xvfb; "
                    "run `make editors` (tools/setup.d/10-krita.sh).", pytrace=False)


def profile_env(root: Path, state_home: Path) -> dict[str, str]:
    """Environment of a Krita process with its own home (settings, resources) and the daemon's state dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DERMIS_", "PYTHON"))}
    home = root / "home"
    runtime = root / "xdg-runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    tmp = root / "tmp"  # Krita's and the plugin's temp files (the mask template): checked for leftovers
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(TMPDIR=str(tmp), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(runtime),
               XDG_STATE_HOME=str(state_home),  # where the client finds the daemon's runtime file
               LANG="C.UTF-8")
    (home / ".config").mkdir(parents=True, exist_ok=True)
    return env


def krita_python_version() -> str:
    from daemon.install.krita import detect_python_version

    return detect_python_version()[0]


def wheels_for(python_version: str) -> Path:
    """grpcio + protobuf wheels for Krita's Python, pinned like this venv (downloaded once)."""
    from daemon.install import vendor

    d = WHEEL_CACHE / f"py{python_version}"
    if len(list(d.glob("*.whl"))) < len(vendor.PACKAGES):
        vendor.download_wheels(d, python_version)
    return d


def install_plugin(pykrita: Path | None, *extra: str) -> None:
    """`dermis install-plugin krita` into ``pykrita`` (None: Krita's default folder)."""
    from daemon.cli import main

    target = ["--target", str(pykrita)] if pykrita is not None else []
    assert main(["install-plugin", "krita", *target, *extra]) == 0


def serve(root: Path, presets: dict[str, str] | None = None) -> ServeProcess:
    """`python -m daemon serve` in its own folders, found by clients through its runtime file: on the
    default listen address (a Unix socket in XDG_RUNTIME_DIR, as for a user on Linux)."""
    config = root / "config"
    for name, text in (presets or {}).items():
        p = config / "dermis" / "presets" / f"{name}.toml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DERMIS_"))}
    runtime = root / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(config), XDG_DATA_HOME=str(root / "data"),
               XDG_CACHE_HOME=str(root / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return ServeProcess(root / "state", "--grace", "2", env=env, log=root / "daemon.log", timeout=60)


def bgra_bytes(rgba: np.ndarray) -> bytes:
    """RGBA pixels as Krita stores them: BGRA, little-endian for 16 bits."""
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).astype("<u2" if rgba.dtype == np.uint16 else "u1").tobytes()


def ellipse_mask(w: int, h: int) -> np.ndarray:
    """A soft elliptic selection (uint8), opaque in the middle and feathered to the edge."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx - w / 2 + 0.5) / (w / 2)) ** 2 + ((yy - h / 2 + 0.5) / (h / 2)) ** 2
    return (np.clip((1.15 - r) / 0.3, 0, 1) * 255).astype(np.uint8)


def read_raw(out: Path, name: str, shape: tuple[int, ...], bits: int) -> np.ndarray:
    dtype = "<u2" if bits == 16 else "u1"
    return np.frombuffer((out / name).read_bytes(), dtype=dtype).reshape(shape)


def run_kritarunner(env: dict[str, str], pythonpath: list[Path], module: str, function: str, *args: str,
                    timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(env, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath), QT_QPA_PLATFORM="offscreen")
    return subprocess.run(["kritarunner", "-s", module, "-f", function, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_krita_gui(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["xvfb-run", "-n", str(free_display()), "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"],
                          env=env, capture_output=True, text=True, timeout=timeout)


def input_image(depth: str, w: int, h: int) -> np.ndarray:
    """A face crop of the example portrait as RGBA (uint8, or uint16 with real low-byte content)."""
    from pipeline import images

    img = images.load(REPO / "examples" / "portrait_astronaut_512.png")
    rgba = images.to_array(img, bit_depth=8, mode="RGBA")[150:150 + h, 160:160 + w].copy()
    if depth == "U16":
        low = np.random.default_rng(0).integers(0, 200, rgba.shape)  # detail 8 bits cannot hold
        u16 = np.clip(rgba.astype(np.int64) * 257 + low, 0, 65535).astype(np.uint16)
        u16[..., 3] = 65535
        return u16
    return rgba


def two_faces() -> np.ndarray:
    """The portrait and its mirror side by side (1024x512 RGBA8): two faces the weight-free detector finds."""
    from pipeline import images

    rgba = images.to_array(images.load(REPO / "examples" / "portrait_astronaut_512.png"), bit_depth=8, mode="RGBA")
    return np.ascontiguousarray(np.concatenate([rgba, rgba[:, ::-1]], axis=1))


def expected_layer(out: Path, name: str, k: int, sent: dict, seed: int, overrides: dict,
                   content: str | None = None) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """What the daemon should return for job ``k`` of a case, from the library directly, on exactly the
    pixels sent: (RGBA layer at the sent depth, its offset in the sent box, its alpha as 0..1)."""
    from pipeline import build, images, run

    x, y, w, h = sent["box"]
    bits = sent["bit_depth"]
    pixels = read_raw(out, f"{name}.{k}.sent.raw", (h, w, 4), bits)
    mask = read_raw(out, f"{name}.{k}.sent_mask.raw", (h, w), 8) if sent["mask"] else None
    r = run(build("lite", overrides, scale=1.0), images.from_array(pixels), seed=seed,
            mask=None if mask is None else mask.astype(np.float32) / 255, output="layer",
            content=content or sent["content"])
    arr = images.to_array(r.image, bit_depth=bits, mode="RGBA")
    return arr, r.offset, arr[..., 3].astype(np.float64) / (255 if bits == 8 else 65535)


def coverage_of(out: Path, name: str, k: int, entry: dict) -> np.ndarray:
    """Job ``k``'s transparency mask (Krita keeps it at 8 bits in any document), as int."""
    lw, lh = entry["rect"][2:]
    return read_raw(out, f"{name}.{k}.mask.raw", (lh, lw), 8).astype(int)


def check_layer(res: dict, out: Path, name: str, *, k: int, seed: int, overrides: dict, tol: int = 1) -> dict:
    """Job ``k``'s layer in Krita equals the library's result on the pixels sent: place, size, colour,
    and coverage (its transparency mask, or its own alpha without a selection); the source untouched."""
    assert res["jobs"][k]["phase"] == "done", res["jobs"][k]
    sent = res["sent"][k]
    want, (ox, oy), _ = expected_layer(out, name, k, sent, seed, overrides)
    entry = next(e for e in res["layers"] if e["job"] == k)
    x, y = sent["box"][:2]
    lx, ly, lw, lh = entry["rect"]
    assert (lx, ly) == (x + ox, y + oy) and (lw, lh) == (want.shape[1], want.shape[0])
    bits = sent["bit_depth"]
    if entry["space"] == sent["wire"]:  # else: checked by the colour-conversion test
        got = read_raw(out, f"{name}.{k}.layer.raw", (lh, lw, 4), bits)[..., [2, 1, 0, 3]]  # Krita's BGRA
        top = 255 if bits == 8 else 65535
        want_alpha = want[..., 3].astype(int)
        if entry["mask"]:
            assert (got[..., 3] == top).all()  # opaque: the selection is in its transparency mask
            assert entry["type"] == "paintlayer" and entry["children"] == [["Selection", "transparencymask"]]
            coverage = coverage_of(out, name, k, entry)
            if bits == 16:  # the mask is 8-bit: the 16-bit alpha's high byte, within 1/255 of a/257
                want_alpha = np.rint(want_alpha / 257).astype(int)
        else:
            coverage = got[..., 3].astype(int)
        alpha_diff = np.abs(coverage - want_alpha).max()
        assert alpha_diff <= tol, f"coverage differs by {alpha_diff}"
        seen = want[..., 3] > 0
        rgb_diff = np.abs(got[..., :3].astype(int) - want[..., :3].astype(int))[seen].max()
        assert rgb_diff <= tol, f"colour differs by {rgb_diff}"
    assert f", {seed})" in entry["name"]  # every layer says its seed
    assert res["source_unchanged"]
    return res
