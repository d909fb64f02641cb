"""The GIMP 3 plug-in inside real GIMP 3.0.4 against a real daemon (`dermis serve`, lite preset).

Each GIMP session runs tests/gimp/driver.py, which builds the images, calls
plug-in-dermis-refine-skin through the PDB (non-interactive) and dumps what it finds. Expected
pixels come from pipeline.run on the same layer and selection: the plug-in must deliver exactly the
library's result, at the right place, masked by the feathered selection, without touching the
source. The plug-in is installed with `dermis install-plugin gimp` (vendored cp313 wheels), as a
user would.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import pipeline
from pipeline import images

from . import _gimp_helpers as g
from .conftest import PORTRAIT, wait_for

pytestmark = [pytest.mark.editor, pytest.mark.slow]

SEED = 7


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    """(chroot root, its Python version) with /proc and /dev/shm mounted for the module."""
    root = g.ensure_chroot()
    with g.mounted(root):
        yield root, g.gimp_python_version(root)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = g.serve_on_tcp(tmp_path_factory.mktemp("daemon-state"))
    yield d
    d.stop()


@pytest.fixture
def work(gimp):
    w = g.Workdir(gimp[0])
    yield w
    w.remove()


# ----------------------------------------------------------------------------------- test images


def portrait_crop(h: int, w: int, y: int = 140, x: int = 170) -> np.ndarray:
    arr = images.to_array(images.load(PORTRAIT), mode="RGB")
    return np.ascontiguousarray(arr[y : y + h, x : x + w])


def to16(arr8: np.ndarray, seed: int = 1) -> np.ndarray:
    """A real 16-bit image: the 8-bit values spread with noise in the low byte."""
    low = np.random.default_rng(seed).integers(0, 256, arr8.shape, dtype=np.uint16)
    return (arr8.astype(np.uint16) << 8) | low


def with_alpha(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    maxv = 255 if rgb.dtype == np.uint8 else 65535
    alpha = np.linspace(0.55, 1.0, w)[None, :].repeat(h, 0)
    return np.dstack([rgb, np.rint(alpha * maxv).astype(rgb.dtype)])


FORMATS = {(3, 8): "R'G'B' u8", (4, 8): "R'G'B'A u8", (3, 16): "R'G'B' u16", (4, 16): "R'G'B'A u16"}


def layer_spec(work, case: str, name: str, arr: np.ndarray, offset=(0, 0), gray: bool = False) -> dict:
    host, inside = work.path(f"{case}.{name}.raw")
    host.write_bytes(np.ascontiguousarray(arr).tobytes())
    depth = 8 if arr.dtype == np.uint8 else 16
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    fmt = ("Y' u8" if channels == 1 else "Y'A u8") if gray else FORMATS[(channels, depth)]
    return {"name": name, "file": inside, "w": arr.shape[1], "h": arr.shape[0], "offset": list(offset),
            "alpha": channels in (2, 4), "format": fmt}


def case(name, layers, *, size, args, source=0, selection=None, depth="u8", base="rgb", **extra) -> dict:
    bits = 8 if depth == "u8" else 16  # what the plug-in exchanges: 16-bit for anything deeper
    return {"name": name, "base": base, "depth": depth, "width": size[0], "height": size[1],
            "layers": layers, "source": source, "selection": selection, "args": args,
            "read_format": f"R'G'B'A u{bits}", "result_format": f"R'G'B'A u{bits}",
            "mask_format": f"Y u{bits}", **extra}


# ----------------------------------------------------------------------------------- expectations


def expected(src: np.ndarray, selection: np.ndarray | None, offset, scale: float = 1.0):
    """pipeline.run on the whole layer with the selection as its mask: (RGBA array, (x, y))."""
    h, w = src.shape[:2]
    mask = None
    if selection is not None and selection.any():
        mask = np.zeros((h, w), np.float32)
        ox, oy = offset
        ch, cw = selection.shape
        x0, y0, x1, y1 = max(0, -ox), max(0, -oy), min(w, cw - ox), min(h, ch - oy)
        mask[y0:y1, x0:x1] = selection[y0 + oy : y1 + oy, x0 + ox : x1 + ox] / 255.0
    res = pipeline.run(pipeline.build("lite", scale=scale), images.from_array(src), seed=SEED,
                       mask=mask, output="layer")
    return images.to_array(res.image), res.offset, res.layer_name


def load_raw(work, rel: str, shape, dtype) -> np.ndarray:
    return np.frombuffer((work.host / "out" / rel).read_bytes(), dtype=dtype).reshape(shape)


def selection_of(work, rec, size) -> np.ndarray:
    return load_raw(work, rec["selection"], (size[1], size[0]), np.uint8)


def layer_named(rec, prefix: str) -> dict:
    hits = [entry for entry in rec["layers"] if entry["name"].startswith(prefix)]
    assert len(hits) == 1, (prefix, [entry["name"] for entry in rec["layers"]], rec.get("error"))
    return hits[0]


def check_result(work, rec, src, *, offset=(0, 0), scale=1.0, size=None, masked=True, atol=0):
    """The new layer equals pipeline.run's layer: name, place, size, pixels, mask; source untouched.

    ``atol`` > 0 only for images GIMP stores as linear float, where writing and reading back the
    16-bit perceptual values may round by a level."""
    assert rec["status"] == "success", rec.get("error")
    sel = selection_of(work, rec, size)
    want, (wx, wy), name = expected(src, sel if masked else None, offset, scale)
    got = layer_named(rec, "Dermis")
    assert got["name"] == name and rec["returned_layer"] == name
    assert got["offset"] == [round(offset[0] * scale) + wx, round(offset[1] * scale) + wy]
    assert got["size"] == [want.shape[1], want.shape[0]]
    dtype = np.uint8 if src.dtype == np.uint8 else np.uint16
    pixels = load_raw(work, got["pixels"], want.shape, dtype)
    np.testing.assert_allclose(pixels[..., :3], want[..., :3], rtol=0, atol=atol)
    if masked:
        assert got["has_mask"]
        mask = load_raw(work, got["mask"], want.shape[:2], dtype)
        np.testing.assert_allclose(mask, want[..., 3], rtol=0, atol=atol)
        assert (pixels[..., 3] == np.iinfo(dtype).max).all()  # the alpha went into the mask
    else:
        assert not got["has_mask"]
        np.testing.assert_array_equal(pixels[..., 3], want[..., 3])
    if scale == 1.0:
        assert all(rec["unchanged"].values()), rec["unchanged"]
    assert rec["selected"] == [name]
    return pixels, want


# ------------------------------------------------------------------------------------------ tests


def test_refine_in_real_gimp(gimp, daemon, work):
    """RGB 8/16-bit, selection / none / on the border, greyscale, scale 2, indexed, errors."""
    root, py = gimp
    g.install_plugin(work, py)
    rgb8 = portrait_crop(120, 160)
    top = with_alpha(np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    small = portrait_crop(72, 96, y=170, x=200)
    gray = images.to_array(images.from_array(portrait_crop(100, 140)), mode="L")[..., 0]
    rgb16 = to16(rgb8)
    whole = with_alpha(portrait_crop(90, 120, y=150, x=180))
    server = {"server": daemon.address}
    lite = {"preset": "lite", "seed": SEED, "scale": 1.0}
    cases = [
        # a feathered ellipse on the bottom layer of two: the result goes between them
        case("rgb8_ellipse", [layer_spec(work, "rgb8_ellipse", "Background", rgb8),
                              layer_spec(work, "rgb8_ellipse", "Top", top, offset=(70, 50))],
             size=(160, 120), args={**lite, **server},
             selection={"kind": "ellipse", "x": 50, "y": 30, "w": 56, "h": 48, "feather": 10}),
        # no selection, a layer with alpha at an offset: the whole layer, alpha kept, no mask;
        # the address comes from $DERMIS_ADDRESS this time
        case("rgb8_whole_offset", [layer_spec(work, "rgb8_whole_offset", "Layer", whole, offset=(24, 18))],
             size=(160, 120), args=dict(lite)),
        # 16-bit, a selection running into the right and bottom edges (no fade there)
        case("rgb16_border", [layer_spec(work, "rgb16_border", "Background", rgb16)],
             size=(160, 120), depth="u16", args={**lite, **server},
             selection={"kind": "rect", "x": 100, "y": 64, "w": 60, "h": 56, "feather": 6}),
        # 32-bit float linear: the plug-in must exchange perceptual 16-bit, never linear values
        case("float_linear", [layer_spec(work, "float_linear", "Background", rgb16)],
             size=(160, 120), depth="float_linear", args={**lite, **server},
             selection={"kind": "ellipse", "x": 40, "y": 20, "w": 70, "h": 60, "feather": 8}),
        case("gray8", [layer_spec(work, "gray8", "Background", gray, gray=True)], base="gray",
             size=(140, 100), args={**lite, **server},
             selection={"kind": "rect", "x": 30, "y": 20, "w": 60, "h": 50, "feather": 8}),
        case("rgb8_scale2", [layer_spec(work, "rgb8_scale2", "Background", small)],
             size=(96, 72), args={**lite, **server, "scale": 2.0},
             selection={"kind": "ellipse", "x": 20, "y": 14, "w": 40, "h": 36, "feather": 4}),
        case("indexed", [layer_spec(work, "indexed", "Background", small)], size=(96, 72),
             args={**lite, **server}, indexed=True),
        case("daemon_down", [layer_spec(work, "daemon_down", "Background", small)], size=(96, 72),
             args={**lite, "server": f"127.0.0.1:{g.free_port()}"}),
        case("wrong_token", [layer_spec(work, "wrong_token", "Background", small)], size=(96, 72),
             args={**lite, **server, "token": "not-the-token"}),
        case("bad_override", [layer_spec(work, "bad_override", "Background", small)], size=(96, 72),
             args={**lite, **server, "overrides": "grain.strength"}),
        # the daemon refuses the job: its message reaches the user unchanged
        case("unknown_preset", [layer_spec(work, "unknown_preset", "Background", small)], size=(96, 72),
             args={**lite, **server, "preset": "no-such-preset"}),
    ]
    t0 = time.monotonic()
    proc = g.run_gimp(root, work, {"cases": cases},
                      env={"DERMIS_TOKEN": daemon.token, "DERMIS_ADDRESS": daemon.address})
    results = {r["name"]: r for r in g.finish_gimp(proc, work)}
    session = time.monotonic() - t0

    r = results["rgb8_ellipse"]
    assert r["menu"] == ["Refine skin…", ["<Image>/Filters/Enhance/Dermis"], "RGB*, GRAY*"]
    check_result(work, r, rgb8, size=(160, 120))
    assert [entry["name"] for entry in r["layers"]] == ["Top", "Dermis (lite, 7)", "Background"]

    check_result(work, results["rgb8_whole_offset"], whole, offset=(24, 18), size=(160, 120), masked=False)

    r = results["rgb16_border"]
    _, want = check_result(work, r, rgb16, size=(160, 120))
    got = layer_named(r, "Dermis")
    assert got["offset"][0] + got["size"][0] == 160 and got["offset"][1] + got["size"][1] == 120
    assert want[-1, -1, 3] == 65535  # selected up to the corner: the mask does not fade at the edge

    r = results["float_linear"]
    seen = load_raw(work, r["source_before"], (120, 160, 4), np.uint16)[..., :3]  # what GIMP hands out
    assert np.abs(seen.astype(int) - rgb16).max() <= 1
    check_result(work, r, np.ascontiguousarray(seen), size=(160, 120), atol=1)

    r = results["gray8"]
    assert r["status"] == "success", r.get("error")
    want, (wx, wy), name = expected(np.repeat(gray[..., None], 3, axis=2),
                                    selection_of(work, r, (140, 100)), (0, 0))
    got = layer_named(r, "Dermis")
    assert got["offset"] == [wx, wy] and got["has_mask"] and got["name"] == name
    pixels = load_raw(work, got["pixels"], want.shape, np.uint8)
    assert (pixels[..., 0] == pixels[..., 1]).all()  # a greyscale layer
    luma = _srgb_luma(want[..., :3])
    assert np.abs(pixels[..., 0].astype(int) - luma).max() <= 2
    np.testing.assert_array_equal(load_raw(work, got["mask"], want.shape[:2], np.uint8), want[..., 3])
    assert all(r["unchanged"].values())

    r = results["rgb8_scale2"]
    check_result(work, r, small, scale=2.0, size=(96, 72))
    assert r["image_size"] == [192, 144]

    r = results["indexed"]
    assert r["status"] == "calling-error"
    assert "indexed" in r["error"] and "Image → Mode → RGB" in r["error"]
    assert [entry["name"] for entry in r["layers"]] == ["Background"]

    r = results["daemon_down"]
    assert r["status"] == "execution-error" and "dermis serve" in r["error"], r.get("error")
    assert [entry["name"] for entry in r["layers"]] == ["Background"]

    r = results["wrong_token"]
    assert r["status"] == "execution-error" and "token" in r["error"].lower(), r.get("error")
    assert [entry["name"] for entry in r["layers"]] == ["Background"]

    r = results["bad_override"]
    # the one override parser's sentence (proto/overrides.py), as `dermis --set` says it
    assert r["status"] == "calling-error" and r["error"] == (
        "Overrides: a setting override is key=value (e.g. grain.strength=0.05), not 'grain.strength'."), r

    r = results["unknown_preset"]
    assert r["status"] == "execution-error", r
    assert "no-such-preset" in r["error"] and "lite" in r["error"], r["error"]  # names what exists
    assert [entry["name"] for entry in r["layers"]] == ["Background"]

    assert "Traceback" not in r["_log"], r["_log"][-3000:]
    assert session < 120, f"the GIMP session took {session:.0f} s"


def _srgb_luma(rgb8: np.ndarray) -> np.ndarray:
    """Y' as babl computes it for an sRGB greyscale image: luminance in linear light, re-encoded."""
    c = rgb8.astype(np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    enc = np.where(y <= 0.0031308, y * 12.92, 1.055 * y ** (1 / 2.4) - 0.055)
    return np.rint(enc * 255).astype(int)


def test_dialog_in_the_gimp_gui(gimp, daemon, work):
    """The interactive path in GIMP's GUI (Xvfb): the dialog opens, Escape cancels, OK runs the job
    with the values shown, one Ctrl+Z takes the whole result away (one undo group), Filters → Repeat
    (last values) runs it again without a dialog, and the token given to the dialog is not stored in
    GIMP's profile."""
    root, py = gimp
    g.install_plugin(work, py)
    small = portrait_crop(72, 96, y=170, x=200)
    sel = {"kind": "ellipse", "x": 20, "y": 14, "w": 40, "h": 36, "feather": 4}
    args = {"preset": "lite", "seed": SEED, "server": daemon.address, "token": daemon.token}
    cases = [
        case("dialog_cancel", [layer_spec(work, "d1", "Background", small)], size=(96, 72), args=args,
             selection=sel, run_mode="interactive", display=True),
        case("dialog_ok", [layer_spec(work, "d2", "Background", small)], size=(96, 72), args=args,
             selection=sel, run_mode="interactive", display=True, title="dermis-undo-check",
             undo="undo-now"),
        # a fresh config: only GIMP's stored last values can bring back preset, seed and server
        case("repeat", [layer_spec(work, "d3", "Background", small)], size=(96, 72), args={},
             selection=sel, run_mode="last", display=True),
    ]
    steps = ["dialog:Escape", "dialog:alt+o", f"file:{work.inside}/out/undo-now",
             "window:dermis-undo-check:ctrl+z"]
    proc = g.run_gimp(root, work, {"cases": cases}, env={"DERMIS_TOKEN": daemon.token}, keys=steps)
    results = {r["name"]: r for r in g.finish_gimp(proc, work)}
    r = results["dialog_cancel"]
    assert r["status"] == "cancel" and [e["name"] for e in r["layers"]] == ["Background"], r
    r = results["dialog_ok"]
    check_result(work, r, small, size=(96, 72))
    assert r["after_undo"] == ["Background"] and r["masks_after_undo"] == [False], \
        f"after one Ctrl+Z: {r['after_undo']}, masks {r['masks_after_undo']}"
    check_result(work, results["repeat"], small, size=(96, 72))
    assert "press_keys: window:dermis-undo-check:ctrl+z" in r["_log"] and "Traceback" not in r["_log"]
    profile = work.host / "home" / ".config" / "GIMP"
    stored = [p for p in profile.rglob("*") if p.is_file() and daemon.token.encode() in p.read_bytes()]
    assert not stored, f"the token was written to {stored}"


def test_missing_grpcio_is_a_message(gimp, daemon, work):
    """Installed without the vendored wheels (the chroot's Python has no grpcio): a readable error."""
    root, py = gimp
    g.install_plugin(work, py, vendored=False)
    small = portrait_crop(48, 64)
    spec = {"cases": [case("no_grpc", [layer_spec(work, "no_grpc", "Background", small)], size=(64, 48),
                           args={"preset": "lite", "server": daemon.address, "token": daemon.token})]}
    r = g.finish_gimp(g.run_gimp(root, work, spec), work)[0]
    assert r["status"] == "execution-error", r
    assert "grpc" in r["error"] and "dermis install-plugin gimp" in r["error"], r["error"]
    assert "Traceback" not in r["_log"]
    assert [entry["name"] for entry in r["layers"]] == ["Background"]


def test_killing_the_plugin_cancels_the_daemon_job(gimp, daemon, work):
    """GIMP's progress Cancel kills the plug-in; its cancel guard must stop the job in the daemon.

    Also: no token at all (no argument, no $DERMIS_TOKEN, no token file in the chroot) is refused
    with a message.
    """
    root, py = gimp
    g.install_plugin(work, py)
    plugin_cmd = f"{work.inside}/home/{g.PLUGIN_HOME}/dermis/dermis.py"
    # the portrait tiled to 1400x1400 at scale 2: several seconds of lite work, time to cancel it
    big = np.ascontiguousarray(np.resize(images.to_array(images.load(PORTRAIT), mode="RGB"), (1400, 1400, 3)))
    small = portrait_crop(48, 64)
    spec = {"cases": [
        case("no_token", [layer_spec(work, "no_token", "Background", small)], size=(64, 48),
             args={"preset": "lite", "server": daemon.address}),
        case("cancel", [layer_spec(work, "cancel", "Background", big)], size=(1400, 1400),
             args={"preset": "lite", "seed": SEED, "scale": 2.0, "server": daemon.address,
                   "token": daemon.token}),
    ]}
    proc = g.run_gimp(root, work, spec)
    with daemon.client(admin=True) as c:  # the plug-in's job is its client's: look as `dermis status` does
        job = wait_for(lambda: next((j for j in c.list_jobs(include_finished=True)
                                      if j.client_name == "gimp" and j.state == "running"), None),
                        60, "the GIMP job to start in the daemon")
        pid = wait_for(lambda: _pid_of(plugin_cmd), 10, "the plug-in process")
        os.kill(pid, signal.SIGKILL)  # what GIMP does 10 ms after its progress Cancel
        t_kill = time.monotonic()
        state = wait_for(lambda: next((j.state for j in c.list_jobs(include_finished=True)
                                        if j.job_id == job.job_id and j.state in ("cancelled", "done", "failed")),
                                       None), 60, "the job to end")
        assert state == "cancelled", state
        cancel_latency = time.monotonic() - t_kill
    results = {r["name"]: r for r in g.finish_gimp(proc, work)}
    r = results["no_token"]
    assert r["status"] == "execution-error" and "token" in r["error"].lower(), r.get("error")
    assert results["cancel"]["status"] != "success"
    assert not any(entry["name"].startswith("Dermis") for entry in results["cancel"]["layers"])
    assert cancel_latency < 10, cancel_latency
    # the guard did its job and left
    wait_for(lambda: True if _pid_of("plugin_gimp.cancel_guard") is None else None, 10, "the guard to exit")


def _pid_of(needle: str) -> int | None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and "pytest" not in cmdline:
            return int(entry)
    return None
