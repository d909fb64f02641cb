"""The Krita plugin inside real Krita 5 (Debian), talking to a real daemon on the lite preset.

Two Krita runs do the work (Krita starts in ~1-15 s, so cases share a run):
- kritarunner (no window): the plugin's core on many documents — read region + mask, a real job
  through the vendored client, the new layer. Each layer is checked pixel by pixel against
  ``pipeline.run`` on the very pixels the plugin sent, and what was sent against the document.
- Krita's GUI under Xvfb with a test-only plugin (tests/krita/dermis_autotest) that clicks the real
  menu entry, presses the docker's Cancel, runs again, checks the layer and undoes it.
Both exit 0 whatever Python does inside them, so each writes a JSON report the tests read.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from tests import _krita_helpers as kh

pytestmark = pytest.mark.editor

W, H = 192, 160
SEED = 7
# lite with the texture and grain switched off: at scale 1 it gives back its input, which is what
# the colour-conversion cases need (there the daemon sees converted pixels, not the document's)
IDENTITY = {"skin_texture.strength": "0", "grain.strength": "0"}
# a user preset that is slow on purpose (~0.1 s stages with face detection, each a cancel point), for
# Cancel and the "UI keeps ticking" measurement in the GUI test; the daemon loads it like any user preset
SLOW_PRESET = "\n".join(
    ['name = "lite-slow"', 'label = "lite-slow"', 'description = "test: lite, repeated"', "scale = 1.0",
     "context = 32", "feather = 8"]
    + [f'[[stage]]\nid = "texture{i}"\nkind = "skin_texture"\nstrength = 0.01\nface_only = true'
       for i in range(20)]
)


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    kh.require_krita()
    return tmp_path_factory.mktemp("krita")


@pytest.fixture(scope="module")
def daemon(base):
    d = kh.serve(base / "daemon", presets={"lite-slow": SLOW_PRESET})
    yield d
    d.stop(signal.SIGINT, timeout=15)


@pytest.fixture(scope="module")
def pykrita(base) -> Path:
    """The plugin installed as a user would, with wheels for the Python Krita embeds."""
    target = base / "profile" / "home" / ".local/share" / "krita" / "pykrita"
    kh.install_plugin(target, "--wheels", str(kh.wheels_for(kh.krita_python_version())))
    return target


def _input_image(depth: str) -> np.ndarray:
    """A face crop of the example portrait as RGBA (uint8, or uint16 with real low-byte content)."""
    from pipeline import images

    img = images.load(kh.REPO / "examples" / "portrait_astronaut_512.png")
    rgba = images.to_array(img, bit_depth=8, mode="RGBA")[150:150 + H, 160:160 + W].copy()
    if depth == "U16":
        low = np.random.default_rng(0).integers(0, 200, rgba.shape)  # detail 8 bits cannot hold
        u16 = np.clip(rgba.astype(np.int64) * 257 + low, 0, 65535).astype(np.uint16)
        u16[..., 3] = 65535
        return u16
    return rgba


CASES = [
    dict(name="u8_soft_selection", depth="U8", profile="", above=True,
         selection={"rect": [50, 30, 90, 100], "mask": "ellipse.raw"}),
    dict(name="u16_selection", depth="U16", profile="sRGB-elle-V2-srgbtrc.icc", selection={"rect": [24, 40, 64, 48]}),
    dict(name="selection_off_the_edge", depth="U8", profile="", selection={"rect": [-30, 110, 100, 90]}),
    dict(name="empty_selection", depth="U8", profile="", selection={}),
    dict(name="selection_outside_canvas", depth="U8", profile="", selection={"rect": [300, 10, 40, 40]}),
    dict(name="layer_alpha_no_selection", depth="U8", profile="",
         patch={"rect": [40, 30, 100, 80], "image": "patch.raw"}),
    dict(name="merged_whole_image", depth="U8", profile="", whole_image=True,
         patch={"rect": [40, 30, 100, 80], "image": "patch.raw"}, selection={"rect": [0, 0, 20, 20]}),
    dict(name="linear_u16_converted", depth="U16", profile="", overrides=IDENTITY,
         selection={"rect": [60, 40, 70, 60]}),
    dict(name="grey_u8_converted", model="GRAYA", depth="U8", profile="", overrides=IDENTITY,
         image="grey.raw", selection={"rect": [60, 40, 70, 60]}),
    dict(name="edited_meanwhile", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         meanwhile="add_layer_above_and_new_document"),
    dict(name="document_closed_meanwhile", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         meanwhile="close_document"),
    dict(name="source_deleted_meanwhile", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         meanwhile="delete_source"),
    dict(name="scale_2_opens_a_new_document", depth="U8", profile="", scale=2.0,
         selection={"rect": [60, 40, 50, 50]}),
    dict(name="daemon_unreachable", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         client={"address": "unix:/nonexistent/dermis.sock", "timeout": 3.0}),
    dict(name="wrong_token", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         client={"token": "not-the-token"}),
]


@pytest.fixture(scope="module")
def core(base, daemon, pykrita):
    """One kritarunner process running every case; returns (report, folder of dumps)."""
    out = base / "core"
    out.mkdir()
    u8, u16 = _input_image("U8"), _input_image("U16")
    (out / "u8.raw").write_bytes(kh.bgra_bytes(u8))
    (out / "u16.raw").write_bytes(kh.bgra_bytes(u16))
    grey = np.stack([u8[..., 1], u8[..., 3]], axis=-1)  # GRAYA: grey, alpha
    (out / "grey.raw").write_bytes(grey.tobytes())
    (out / "ellipse.raw").write_bytes(kh.ellipse_mask(90, 100).tobytes())
    patch = u8[30:110, 40:140].copy()
    patch[..., 3] = np.linspace(40, 255, 100, dtype=np.uint8)[None, :]  # partly transparent
    (out / "patch.raw").write_bytes(kh.bgra_bytes(patch))
    cases = []
    for c in CASES:
        c = dict(c, width=W, height=H, preset="lite", seed=SEED)
        c.setdefault("image", "u16.raw" if c["depth"] == "U16" else "u8.raw")
        cases.append(c)
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "cases": cases}))
    env = kh.profile_env(base / "core-profile", daemon.state)
    proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, pykrita], "kr_core", "main", str(spec))
    report_file = out / "report.json"
    assert report_file.exists(), f"kritarunner wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert "crash" not in report, report["crash"]
    assert proc.returncode == 0, f"rc {proc.returncode}: {json.dumps(report, indent=1)[:3000]}"
    return report, out, {"u8": u8, "u16": u16, "patch": patch}


# -- checks ----------------------------------------------------------------------------------------
def _case(core, name) -> dict:
    report, _, _ = core
    res = report["cases"][name]
    assert "crash" not in res, res["crash"]
    return res


def _expected_layer(sent: np.ndarray, mask: np.ndarray | None, overrides: dict) -> tuple[np.ndarray, tuple]:
    """What the daemon should return, from the library directly, on exactly the pixels sent."""
    from pipeline import build, images, run

    r = run(build("lite", overrides, scale=1.0), images.from_array(sent), seed=SEED,
            mask=None if mask is None else mask.astype(np.float32) / 255, output="layer")
    return images.to_array(r.image, bit_depth=images.from_array(sent).bit_depth, mode="RGBA"), r.offset


def _check_layer(core, name: str, *, overrides=None, tol: int = 1) -> dict:
    """Sent pixels → pipeline.run → must equal the layer Krita now holds, at the right place."""
    res = _case(core, name)
    _, out, _ = core
    assert res["job"]["phase"] == "done", res["job"]
    x, y, w, h = res["sent"]["box"]
    bits = res["sent"]["bit_depth"]
    sent = kh.read_raw(out, f"{name}.sent.raw", (h, w, 4), bits)
    mask = kh.read_raw(out, f"{name}.sent_mask.raw", (h, w), 8) if res["sent"]["mask"] else None
    want, (ox, oy) = _expected_layer(sent, mask, overrides or {})
    lx, ly, lw, lh = res["layer_rect"]
    assert (lx, ly) == (x + ox, y + oy) and (lw, lh) == (want.shape[1], want.shape[0])
    if res["new_space"] == res["sent"]["wire"]:  # else: checked by the colour-conversion test
        got = kh.read_raw(out, f"{name}.layer.raw", (lh, lw, 4), bits)[..., [2, 1, 0, 3]]  # Krita's BGRA
        alpha_diff = np.abs(got[..., 3].astype(int) - want[..., 3].astype(int)).max()
        assert alpha_diff <= tol, f"alpha differs by {alpha_diff}"
        seen = want[..., 3] > 0
        rgb_diff = np.abs(got[..., :3].astype(int) - want[..., :3].astype(int))[seen].max()
        assert rgb_diff <= tol, f"colour differs by {rgb_diff}"
    assert res["result"]["layer_name"] == f"Dermis (lite, {SEED})" and res["result"]["seed"] == SEED
    assert res["source_unchanged"]
    return res


def test_installer_found_the_python_krita_embeds(core):
    from daemon.install.krita import detect_python_version

    version, how = detect_python_version()
    assert version == core[0]["python"] and how.startswith("linked by")
    assert core[0]["plugin_file"].endswith("dermis_krita/__init__.py")


def test_u8_soft_selection_gives_the_pipelines_layer_above_the_source(core):
    res = _check_layer(core, "u8_soft_selection")
    _, out, inputs = core
    # what was sent is the document's own pixels (R,G,B,A) around the selection, and the mask is
    # the selection itself
    x, y, w, h = res["sent"]["box"]
    assert (x, y) == (0, 0) and (w, h) == (W, 160)  # 50-128 < 0, 30+100+128 > 160: clipped padding
    sent = kh.read_raw(out, "u8_soft_selection.sent.raw", (h, w, 4), 8)
    assert np.array_equal(sent, inputs["u8"][y:y + h, x:x + w])
    mask = kh.read_raw(out, "u8_soft_selection.sent_mask.raw", (h, w), 8)
    want_mask = np.zeros((H, W), np.uint8)
    want_mask[30:130, 50:140] = kh.ellipse_mask(90, 100)
    assert np.array_equal(mask, want_mask[y:y + h, x:x + w])
    assert res["layers_after"] == ["Background", "Dermis (lite, 7)", "Above", "Selection Mask"]
    assert res["new_space"] == ["RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc"]
    # the layer's alpha is the feathered selection: opaque inside, nothing far outside
    got = kh.read_raw(out, "u8_soft_selection.layer.raw", (res["layer_rect"][3], res["layer_rect"][2], 4), 8)
    lx, ly = res["layer_rect"][:2]
    assert got[80 - ly, 95 - lx, 3] == 255 and got[5 - ly, 5 - lx, 3] == 0


def test_u16_document_goes_and_comes_back_as_16_bit(core):
    res = _check_layer(core, "u16_selection")
    assert res["sent"]["bit_depth"] == 16 and res["sent"]["notes"] == []
    assert res["new_space"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"]
    _, out, inputs = core
    x, y, w, h = res["sent"]["box"]
    assert np.array_equal(kh.read_raw(out, "u16_selection.sent.raw", (h, w, 4), 16), inputs["u16"][y:y + h, x:x + w])


def test_selection_hanging_off_the_canvas_edge(core):
    res = _check_layer(core, "selection_off_the_edge")
    x, y, w, h = res["sent"]["box"]
    assert x == 0 and y + h == H  # clipped at the left and bottom edges
    lx, ly, lw, lh = res["layer_rect"]
    assert lx >= 0 and ly >= 0 and lx + lw <= W and ly + lh <= H


@pytest.mark.parametrize("name, words", [("empty_selection", "selection is empty"),
                                         ("selection_outside_canvas", "outside the canvas")])
def test_empty_or_outside_selection_is_a_clear_message_and_no_job(core, name, words):
    res = _case(core, name)
    assert words in res["read_error"] and "job" not in res
    assert res["layers_after"] == res["layers_before"]


def test_whole_layer_without_selection_keeps_the_layers_alpha(core):
    res = _check_layer(core, "layer_alpha_no_selection")
    assert res["sent"]["box"] == [40, 30, 100, 80] and not res["sent"]["mask"]
    assert res["layers_after"] == ["Background", "Patch", "Dermis (lite, 7)"]
    _, out, inputs = core
    got = kh.read_raw(out, "layer_alpha_no_selection.layer.raw", (80, 100, 4), 8)
    assert np.abs(got[..., 3].astype(int) - inputs["patch"][..., 3]).max() <= 1


def test_whole_image_uses_the_merged_image_and_goes_on_top(core):
    res = _check_layer(core, "merged_whole_image")
    _, out, _ = core
    assert res["sent"]["box"] == [0, 0, W, H] and not res["sent"]["mask"]  # the selection is ignored
    merged = kh.read_raw(out, "merged_whole_image.merged.raw", (H, W, 4), 8)[..., [2, 1, 0, 3]]
    assert np.array_equal(kh.read_raw(out, "merged_whole_image.sent.raw", (H, W, 4), 8), merged)
    assert res["layers_after"] == ["Background", "Patch", "Dermis (lite, 7)", "Selection Mask"]


@pytest.mark.parametrize("name, tol", [("linear_u16_converted", 4), ("grey_u8_converted", 1)])
def test_other_colour_spaces_are_converted_on_a_copy(core, name, tol):
    res = _check_layer(core, name, overrides=IDENTITY)
    assert res["sent"]["wire"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"] and res["sent"]["notes"]
    assert res["new_space"] == res["doc_space"] == res["source_space"]  # back in the document's space
    # lite without texture or grain is an identity: inside the selection, the new layer must hold the
    # source's own values again after the two conversions
    _, out, _ = core
    lx, ly, lw, lh = res["layer_rect"]
    bits = 16 if res["doc_space"][1] == "U16" else 8
    ch = 4 if res["doc_space"][0] == "RGBA" else 2
    got = kh.read_raw(out, f"{name}.layer.raw", (lh, lw, ch), bits).astype(int)
    src = kh.read_raw(out, f"{name}.source_after.raw", (lh, lw, ch), bits).astype(int)
    inside = got[..., -1] > 0  # colour is stored unpremultiplied: every visible pixel counts
    assert inside.sum() > 1000
    diff = np.abs(got - src)[inside][:, :-1]
    print(name, "max diff", diff.max(), "mean", diff.mean())
    assert diff.max() <= tol


def test_result_lands_above_its_source_after_edits(core):
    res = _check_layer(core, "edited_meanwhile")
    assert res["inserted"]["same_document"]  # not the document created (and active) meanwhile
    assert res["layers_after"] == ["Background", "Dermis (lite, 7)", "Meanwhile", "Selection Mask"]


def test_closed_document_is_reported_not_guessed(core):
    res = _case(core, "document_closed_meanwhile")
    assert res["job"]["phase"] == "done" and "was closed" in res["insert_error"]


def test_deleted_source_puts_the_result_on_top_and_says_so(core):
    res = _case(core, "source_deleted_meanwhile")
    assert res["job"]["phase"] == "done"
    assert [n for n in res["layers_after"] if n != "Selection Mask"] == ["Dermis (lite, 7)"]
    assert "was deleted" in res["inserted"]["notes"][0]


def test_plugin_without_grpc_explains_itself(base, tmp_path):
    """Installed with --no-vendor into a Krita whose Python lacks grpcio: a message, not a crash."""
    target = tmp_path / "pykrita"
    kh.install_plugin(target, "--no-vendor")
    env = kh.profile_env(base / "core-profile", tmp_path / "state")
    out = tmp_path / "nogrpc.json"
    proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, target], "kr_core", "no_grpc", str(out))
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "crash" not in report, report["crash"]
    assert not report["grpc_importable"]
    assert report["job"]["phase"] == "failed" and report["job"]["code"] == "dependency_missing"
    assert "grpc" in report["job"]["error"].lower()
    assert report["info"]["code"] == "dependency_missing"


def test_scale_above_1_opens_the_whole_image_as_a_new_document(core):
    res = _case(core, "scale_2_opens_a_new_document")
    assert res["job"]["phase"] == "done", res["job"]
    assert res["sent"]["box"] == [0, 0, W, H]  # the whole canvas, the selection as mask
    nd = res["new_document"]
    assert nd["open"] and nd["size"] == [2 * W, 2 * H] and nd["layers"] == ["Dermis (lite, 7)"]
    assert res["result"]["canvas"] == [2 * W, 2 * H] and res["result"]["offset"] == [0, 0]
    assert res["layers_after"] == res["layers_before"] and res["source_unchanged"]
    # the new document is the pipeline's full-mode output
    from pipeline import build, images, run

    _, out, _ = core
    sent = kh.read_raw(out, "scale_2_opens_a_new_document.sent.raw", (H, W, 4), 8)
    mask = kh.read_raw(out, "scale_2_opens_a_new_document.sent_mask.raw", (H, W), 8)
    want = images.to_array(run(build("lite", scale=2.0), images.from_array(sent), seed=SEED,
                               mask=mask.astype(np.float32) / 255, output="full").image, bit_depth=8, mode="RGBA")
    got = kh.read_raw(out, "scale_2_opens_a_new_document.new_document.raw", (2 * H, 2 * W, 4), 8)[..., [2, 1, 0, 3]]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("name, code, words", [("daemon_unreachable", "unavailable", "daemon"),
                                               ("wrong_token", "unauthenticated", "token")])
def test_daemon_problems_are_readable_messages(core, name, code, words):
    res = _case(core, name)
    assert res["job"]["phase"] == "failed" and res["job"]["code"] == code, res["job"]
    assert words in res["job"]["error"].lower() and "Traceback" not in res["job"]["error"]
    assert "layers_after" not in res  # nothing was inserted


# -- the GUI ---------------------------------------------------------------------------------------
def test_gui_menu_action_cancel_run_and_undo(base, daemon, monkeypatch):
    """Krita's real window: menu entry → Cancel in the docker → menu entry again → new layer → undo."""
    import shutil

    profile = base / "gui-profile"
    env = kh.profile_env(profile, daemon.state)
    # installed the way a user does it: default folder of this profile, switched on in its kritarc
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    kh.install_plugin(None, "--enable", "--wheels", str(kh.wheels_for(kh.krita_python_version())))
    home_pykrita = Path(env["XDG_DATA_HOME"]) / "krita" / "pykrita"
    assert (home_pykrita / "dermis_krita" / "vendor" / "grpc").is_dir()
    shutil.copytree(kh.KRITA_TESTS / "dermis_autotest", home_pykrita / "dermis_autotest")
    shutil.copy(kh.KRITA_TESTS / "dermis_autotest.desktop", home_pykrita)
    kritarc = Path(env["XDG_CONFIG_HOME"], "kritarc")
    assert "enable_dermis_krita=true" in kritarc.read_text()
    kritarc.write_text(kritarc.read_text().replace("[python]\n", "[python]\nenable_dermis_autotest=true\n"))
    from pipeline import images

    img = images.load(kh.REPO / "examples" / "portrait_astronaut_512.png")
    rgba = images.to_array(img, bit_depth=8, mode="RGBA")
    (profile / "image.raw").write_bytes(kh.bgra_bytes(rgba))
    out = profile / "gui.json"
    spec = {"out": str(out), "image": str(profile / "image.raw"), "width": rgba.shape[1], "height": rgba.shape[0],
            "selection": [150, 100, 220, 260], "preset": "lite-slow", "seed": SEED, "hard_timeout_s": 150,
            "screenshot": str(profile / "after-run.png")}
    (profile / "spec.json").write_text(json.dumps(spec))
    env["DERMIS_AUTOTEST_SPEC"] = str(profile / "spec.json")
    proc = kh.run_krita_gui(env, timeout=200)
    assert out.exists(), f"Krita wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert r["error"] is None and not r["exceptions"], json.dumps(r, indent=1)[:4000]
    assert proc.returncode == 0
    assert r["setup"]["docker"] and r["setup"]["menu_action"]
    conn = r["connected"]
    assert conn["server_text"].startswith("Connected: Dermis") and "lite-slow" in conn["presets"]
    assert conn["missing"].startswith("Missing weights:")  # no model weights on this machine
    assert "face_restore.enabled" in conn["default_controls"] and "final.denoise" in conn["default_controls"]
    assert conn["preset_shown"] == "lite-slow"

    c = r["cancel"]
    assert c["trigger_s"] < 0.5  # the action returns at once; the upload happens on a worker thread
    assert c["phase"] == "cancelled" and c["fraction"] < 1.0 and c["cancel_latency_s"] < 10
    assert c["layers"] == ["Background", "Selection Mask"] and c["error"] == ""

    run = r["run"]
    assert run["phase"] == "done" and run["error"] == "" and run["trigger_s"] < 0.5
    assert run["layers"] == ["Background", "Dermis (lite-slow, 7)", "Selection Mask"]
    assert run["alpha_center"] == 255 and run["alpha_far"] == 0
    assert run["message"].startswith("Added 'Dermis (lite-slow, 7)'")
    # the UI thread kept running: a 20 ms heartbeat ticked all through the job. Blocked, it would
    # tick once, after a gap as long as the job; under Xvfb on 2 busy cores it manages ~20/s.
    assert run["seconds"] > 1.0, run
    assert run["max_gap_s"] < 0.5 and run["ticks"] >= 5 * run["seconds"], run
    assert len(run["progress_texts"]) >= 3 and run["docker_progress"] == 1000

    u = r["undo"]
    assert u["action_text"] == "Undo Add Layer"  # the insertion is one step, and the last one
    assert u["layers"] == ["Background", "Selection Mask"] and u["source_unchanged"]
