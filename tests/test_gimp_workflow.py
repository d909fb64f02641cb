"""Issue 17 in real GIMP 3.0.4 against a real daemon (`dermis serve`, lite preset): the retoucher's
workflow. The detail layer in Grain Merge with its strength, feather and context sent to the daemon,
a remembered denoise that lite has no stage for, selection islands and variations as one layer group.
(What the user does in the GUI meanwhile, and undo: test_gimp_gui_workflow.py.) One GIMP session runs every case
(tests/gimp/driver.py); expected pixels come from pipeline.run on the same layer and selection.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

import pipeline
from pipeline import images

from . import _gimp_helpers as g
from ._detail_checks import check_composites, judged_pixels, normal_composite
from .test_gimp_editor import case, layer_spec, load_raw, portrait_crop, selection_of

pytestmark = [pytest.mark.editor, pytest.mark.slow]

SEED = 7
W, H = 160, 120


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Every case of this file in one GIMP session: (workdir, results by case name, daemon)."""
    root = g.ensure_chroot()
    with g.mounted(root):
        daemon = g.serve_on_tcp(tmp_path_factory.mktemp("daemon-state"))
        work = g.Workdir(root)
        try:
            g.install_plugin(work, g.gimp_python_version(root))
            yield work, _run_cases(root, work, daemon), daemon
        finally:
            work.remove()
            daemon.stop()


SRC = portrait_crop(H, W)
TWO_FACES = np.ascontiguousarray(np.concatenate([portrait_crop(512, 512, 0, 0),
                                                 portrait_crop(512, 512, 0, 0)[:, ::-1]], axis=1))
ELLIPSE = {"kind": "ellipse", "x": 50, "y": 30, "w": 56, "h": 48, "feather": 6}
BIG_ELLIPSE = {"kind": "ellipse", "x": 20, "y": 8, "w": 120, "h": 104, "feather": 6}
TWO_ISLANDS = {"shapes": [{"kind": "ellipse", "x": 10, "y": 14, "w": 36, "h": 32},
                          {"kind": "rect", "x": 110, "y": 70, "w": 34, "h": 30}], "feather": 3}


def _run_cases(root, work, daemon) -> dict:
    lite = {"preset": "lite", "seed": SEED, "scale": 1.0, "server": daemon.address}

    def one(name, args, selection=ELLIPSE, **extra):
        return case(name, [layer_spec(work, name, "Background", SRC)], size=(W, H), args={**lite, **args},
                    selection=selection, **extra)

    cases = [
        one("detail", {"output": "detail"}, selection=BIG_ELLIPSE,
            composite=[[100, ""], [0, ""], [100, "NORMAL"]]),
        one("strength", {"strength": 40}),
        one("feather_context", {"feather": 4.0, "context": 160}),
        # a denoise remembered from supir-srpo: lite has no such stage, the run still works
        one("remembered_denoise", {"denoise-1": 0.4, "denoise-2": 0.3}),
        one("islands", {}, selection=TWO_ISLANDS),
        one("islands_off", {"islands": False}, selection=TWO_ISLANDS),
        one("seeds", {"variations": 2}),
        # the portrait and its mirror, no selection: the daemon finds two faces, one job each
        case("faces", [layer_spec(work, "faces", "Background", TWO_FACES)], size=(1024, 512),
             args={**lite, "faces": True}),
    ]
    proc = g.run_gimp(root, work, {"cases": cases}, env={"DERMIS_TOKEN": daemon.token})
    return {r["name"]: r for r in g.finish_gimp(proc, work)}


def _expected(mask: np.ndarray | None, overrides=None, content: Literal["normal", "detail"] = "normal"):
    m = None if mask is None else mask.astype(np.float32) / 255
    res = pipeline.run(pipeline.build("lite", overrides, scale=1.0), images.from_array(SRC), seed=SEED,
                       mask=m, output="layer", content=content)
    return images.to_array(res.image), res.offset, res.layer_name


def check_layer(work, entry, mask, overrides=None, seed=SEED):
    """A Dermis layer equals pipeline.run's: place, size, pixels, layer mask."""
    m = None if mask is None else mask.astype(np.float32) / 255
    res = pipeline.run(pipeline.build("lite", overrides, scale=1.0), images.from_array(SRC), seed=seed,
                       mask=m, output="layer")
    want = images.to_array(res.image)
    assert entry["offset"] == list(res.offset) and entry["size"] == [want.shape[1], want.shape[0]], entry
    got = load_raw(work, entry["pixels"], want.shape, np.uint8)
    np.testing.assert_array_equal(got[..., :3], want[..., :3])
    np.testing.assert_array_equal(load_raw(work, entry["mask"], want.shape[:2], np.uint8), want[..., 3])
    return res


def _top(rec) -> dict:
    assert rec["status"] == "success", rec.get("error")
    tops = [e for e in rec["layers"] if e["name"].startswith("Dermis")]
    assert len(tops) == 1 and tops[0]["name"] == rec["returned_layer"], rec["layers"]
    return tops[0]


def test_detail_layer_in_grain_merge(session):
    """Grain Merge at 100 % opacity; composited by GIMP: the normal result within 2/255 where the
    source was not clipped, the source exactly at 0 %, the source's sigma-8 blur within 1/255.
    Negative control: the same layer in Normal mode fails both bounds."""
    work, results, _ = session
    rec = results["detail"]
    top = _top(rec)
    assert (top["name"], top["mode"], top["opacity"]) == ("Dermis detail (lite, 7)", "grain-merge", 100.0)
    sel = selection_of(work, rec, (W, H))
    normal, (ox, oy), _ = _expected(sel)
    src = SRC / 255
    alpha = normal[..., 3] / 255
    want = normal_composite(src, normal[..., :3] / 255, alpha, (ox, oy))
    inside = judged_pixels(src, alpha, (ox, oy))

    def composite(key):
        return load_raw(work, rec["composites"][key], (H, W, 4), np.uint8)[..., :3] / 255

    check_composites("GIMP", src, want, inside, composite("100"), composite("0"), composite("100NORMAL"))
    # the layer itself is the library's detail layer
    detail, _, _ = _expected(sel, content="detail")
    np.testing.assert_array_equal(load_raw(work, top["pixels"], detail.shape, np.uint8)[..., :3], detail[..., :3])


def test_strength_is_the_layer_opacity(session):
    work, results, _ = session
    top = _top(results["strength"])
    assert (top["mode"], top["opacity"]) == ("normal", 40.0)
    check_layer(work, top, selection_of(work, results["strength"], (W, H)))


def test_feather_and_context_reach_the_daemon(session):
    """The result equals the library's with feather 4 and context 160 and differs from the preset's
    (16, 64): the fields were sent. Context 160 also widens what is read (padding 192 > 128)."""
    work, results, _ = session
    rec = results["feather_context"]
    sel = selection_of(work, rec, (W, H))
    res = check_layer(work, _top(rec), sel, {"feather": "4", "context": "160"})
    default = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(SRC), seed=SEED,
                           mask=sel.astype(np.float32) / 255, output="layer")
    assert images.to_array(default.image).shape != images.to_array(res.image).shape or \
        not np.array_equal(images.to_array(default.image), images.to_array(res.image))


def test_a_remembered_denoise_does_not_break_lite(session):
    work, results, _ = session
    rec = results["remembered_denoise"]
    check_layer(work, _top(rec), selection_of(work, rec, (W, H)))
    assert "Denoise 1 was not used: preset 'lite' has no stage(s) with a denoise setting." in rec["_log"]


def test_islands_become_one_group_with_a_layer_each(session):
    """Two separate shapes: two jobs, one group 'Dermis (lite, 7)' holding a layer per island, each
    equal to the library's run on that island alone; with islands off, one layer for both."""
    work, results, _ = session
    rec = results["islands"]
    top = _top(rec)
    assert top["group"] and top["name"] == "Dermis (lite, 7)" and top["mode"] in ("normal", "pass-through")
    names = [c["name"] for c in top["children"]]
    assert sorted(names) == ["Dermis (lite, 7) island 1 of 2", "Dermis (lite, 7) island 2 of 2"], names
    sel = selection_of(work, rec, (W, H))
    left, right = sel.copy(), sel.copy()
    left[:, W // 2:] = 0
    right[:, :W // 2] = 0
    by_x = sorted(top["children"], key=lambda c: c["offset"][0])
    check_layer(work, by_x[0], left)
    check_layer(work, by_x[1], right)
    assert all(c["visible"] for c in top["children"])
    assert rec["selected"] == ["Dermis (lite, 7)"]

    one = _top(results["islands_off"])
    assert not one["group"] and one["name"] == "Dermis (lite, 7)"
    check_layer(work, one, selection_of(work, results["islands_off"], (W, H)))


def test_variations_are_layers_named_with_their_seed(session):
    work, results, _ = session
    rec = results["seeds"]
    top = _top(rec)
    assert top["group"] and top["name"] == "Dermis (lite, seeds 7, 8)"
    kids = [(c["name"], c["visible"]) for c in top["children"]]
    assert kids == [("Dermis (lite, 7)", True), ("Dermis (lite, 8)", False)], kids
    sel = selection_of(work, rec, (W, H))
    check_layer(work, top["children"][0], sel, seed=7)
    check_layer(work, top["children"][1], sel, seed=8)


def test_each_detected_face_becomes_a_layer_of_the_group(session):
    """Face detection on: two faces in the image, two jobs, one group with a layer per face, each
    layer covering one face and not the other."""
    from pipeline.skin import faces_with_skin

    _, results, _ = session
    rec = results["faces"]
    top = _top(rec)
    assert top["group"] and top["name"] == "Dermis (lite, 7)"
    assert [c["name"] for c in top["children"]] == ["Dermis (lite, 7) face 1 of 2", "Dermis (lite, 7) face 2 of 2"]
    faces = [f.box for f in faces_with_skin(images.from_array(TWO_FACES).rgb)]
    assert len(faces) == 2
    for child in top["children"]:
        (x, y), (w, h) = child["offset"], child["size"]
        holds = [fx0 >= x and fx1 <= x + w and fy0 >= y and fy1 <= y + h for fx0, fy0, fx1, fy1 in faces]
        assert holds.count(True) == 1, (child, faces)
