"""The Krita plugin inside real Krita 5 (Debian), talking to a real daemon on the lite preset.

One kritarunner process (no window; Krita starts in ~1-15 s, so cases share it) lets the plugin's own
controller do what the menu entry does on many documents: read region + mask, split the selection into
jobs (islands, faces, seeds), run them through the vendored client, insert the layer or group. Each
new layer is checked pixel by pixel against ``pipeline.run`` on the very pixels the plugin sent, and
what was sent against the document. Krita's GUI (menu entries, Cancel, queueing, undo, previews, UI
responsiveness) is test_krita_gui.py; an image closed mid-run is test_krita_closed.py (with these
fixtures); Krita closed mid-run and a plugin without gRPC are
test_krita_restart.py. kritarunner exits 0 whatever Python does inside it, so the
driver writes a JSON report the tests read.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from tests import _krita_helpers as kh
from tests._detail_checks import check_composites, judged_pixels, normal_composite

pytestmark = pytest.mark.editor

W, H = 192, 160
SEED = 7
# lite with the texture and grain switched off: at scale 1 it gives back its input, which is what
# the colour-conversion cases need (there the daemon sees converted pixels, not the document's)
IDENTITY = {"skin_texture.strength": "0", "grain.strength": "0"}


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    kh.require_krita()
    return tmp_path_factory.mktemp("krita")


@pytest.fixture(scope="module")
def daemon(base):
    d = kh.serve(base / "daemon", presets={"lite-slow": kh.SLOW_PRESET})
    yield d
    d.stop(signal.SIGINT, timeout=15)


@pytest.fixture(scope="module")
def pykrita(base) -> Path:
    """The plugin installed as a user would, with wheels for the Python Krita embeds."""
    target = base / "profile" / "home" / ".local/share" / "krita" / "pykrita"
    kh.install_plugin(target, "--wheels", str(kh.wheels_for(kh.krita_python_version())))
    return target


ELLIPSE = {"rect": [50, 30, 90, 100], "mask": "ellipse.raw"}
CASES = [
    dict(name="u8_soft_selection", depth="U8", profile="", above=True, selection=ELLIPSE,
         composites=["inserted", "mask_zero", "mask_full"]),
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
    dict(name="source_deleted_meanwhile", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         meanwhile="delete_source"),
    dict(name="scale_2_opens_a_new_document", depth="U8", profile="", scale=2.0,
         selection={"rect": [60, 40, 50, 50]}),
    dict(name="daemon_unreachable", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         client={"address": "unix:/nonexistent/dermis.sock", "timeout": 3.0}),
    dict(name="wrong_token", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         client={"token": "not-the-token"}),
    # issue 17: the detail layer, feather/context from the docker, islands, variations, faces
    dict(name="detail_layer", depth="U8", profile="", selection=ELLIPSE, content="detail",
         composites=["inserted", "opacity0", "normal_mode"]),
    dict(name="feather_and_context", depth="U8", profile="", selection={"rect": [60, 40, 60, 50]},
         settings_overrides={"feather": "4", "context": "160"}),
    dict(name="two_islands_two_seeds", depth="U16", profile="sRGB-elle-V2-srgbtrc.icc", variations=2,
         selection={"rect": [0, 0, W, H], "mask": "two_islands.raw"}),
    dict(name="three_variations", depth="U8", profile="", variations=3, selection={"rect": [60, 40, 50, 50]}),
    dict(name="islands_off", depth="U8", profile="", islands=False,
         selection={"rect": [0, 0, W, H], "mask": "two_islands.raw"}),
    dict(name="two_faces", depth="U8", profile="", width=1024, height=512, image="two_faces.raw", faces=True,
         selection={"rect": [100, 20, 850, 300]}),
]


@pytest.fixture(scope="module")
def core(request, base, daemon, pykrita):
    """One kritarunner process running every case of the module (``CASES``: this one's, or
    test_krita_closed.py's, which imports these fixtures); returns (report, folder of dumps, inputs)."""
    out = base / "core"
    out.mkdir()
    u8, u16 = kh.input_image("U8", W, H), kh.input_image("U16", W, H)
    (out / "u8.raw").write_bytes(kh.bgra_bytes(u8))
    (out / "u16.raw").write_bytes(kh.bgra_bytes(u16))
    grey = np.stack([u8[..., 1], u8[..., 3]], axis=-1)  # GRAYA: grey, alpha
    (out / "grey.raw").write_bytes(grey.tobytes())
    (out / "ellipse.raw").write_bytes(kh.ellipse_mask(90, 100).tobytes())
    patch = u8[30:110, 40:140].copy()
    patch[..., 3] = np.linspace(40, 255, 100, dtype=np.uint8)[None, :]  # partly transparent
    (out / "patch.raw").write_bytes(kh.bgra_bytes(patch))
    islands = np.zeros((H, W), np.uint8)
    islands[20:70, 20:80] = 255
    islands[90:150, 110:180] = kh.ellipse_mask(70, 60)
    (out / "two_islands.raw").write_bytes(islands.tobytes())
    faces = kh.two_faces()
    (out / "two_faces.raw").write_bytes(kh.bgra_bytes(faces))
    cases = []
    for c in request.module.CASES:
        c = dict(c, preset="lite", seed=SEED)
        c.setdefault("width", W)
        c.setdefault("height", H)
        c.setdefault("image", "u16.raw" if c["depth"] == "U16" else "u8.raw")
        cases.append(c)
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "cases": cases}))
    env = kh.profile_env(base / "core-profile", daemon.state)
    proc = kh.run_kritarunner(env, [kh.KRITA_TESTS, pykrita], "kr_core", "main", str(spec), timeout=420)
    report_file = out / "report.json"
    assert report_file.exists(), f"kritarunner wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert "crash" not in report, report["crash"]
    assert proc.returncode == 0, f"rc {proc.returncode}: {json.dumps(report, indent=1)[:3000]}"
    return report, out, {"u8": u8, "u16": u16, "patch": patch, "islands": islands, "faces": faces}


def _case(core, name) -> dict:
    res = core[0]["cases"][name]
    assert "crash" not in res, res["crash"]
    return res


def _check_layer(core, name: str, *, k: int = 0, overrides=None, tol: int = 1) -> dict:
    """Sent pixels -> pipeline.run -> must equal the layer (and its mask) Krita now holds."""
    res = _case(core, name)
    return kh.check_layer(res, core[1], name, k=k, seed=res["sent"][k]["seed"], overrides=overrides or {}, tol=tol)


# -- checks ----------------------------------------------------------------------------------------
def test_installer_found_the_python_krita_embeds(core):
    from daemon.install.krita import detect_python_version

    version, how = detect_python_version()
    assert version == core[0]["python"] and how.startswith("linked by")
    assert core[0]["plugin_file"].endswith("dermis_krita/__init__.py")


def test_u8_soft_selection_gives_an_opaque_layer_with_the_selection_as_its_transparency_mask(core):
    res = _check_layer(core, "u8_soft_selection")
    _, out, inputs = core
    x, y, w, h = res["sent"][0]["box"]
    assert (x, y) == (0, 0) and (w, h) == (W, 160)  # 50-128 < 0, 30+100+128 > 160: clipped padding
    sent = kh.read_raw(out, "u8_soft_selection.0.sent.raw", (h, w, 4), 8)
    assert np.array_equal(sent, inputs["u8"][y:y + h, x:x + w])
    mask = kh.read_raw(out, "u8_soft_selection.0.sent_mask.raw", (h, w), 8)
    want_mask = np.zeros((H, W), np.uint8)
    want_mask[30:130, 50:140] = kh.ellipse_mask(90, 100)
    assert np.array_equal(mask, want_mask[y:y + h, x:x + w])
    assert res["layers_after"] == ["Background", "Dermis (lite, 7)", "Above", "Selection Mask"]
    layer = res["layers"][0]
    assert layer["space"] == ["RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc"]
    # a paint layer with a real transparency mask (the feathered selection, to paint), no group
    assert layer["type"] == "paintlayer" and layer["children"] == [["Selection", "transparencymask"]]
    assert res["tree"][1] == ["Dermis (lite, 7)", "paintlayer", True, [["Selection", "transparencymask", True, []]]]
    lx, ly, lw, lh = layer["rect"]
    got = kh.read_raw(out, "u8_soft_selection.0.layer.raw", (lh, lw, 4), 8)
    assert (got[..., 3] == 255).all()  # opaque over the processed rectangle
    m = kh.coverage_of(out, "u8_soft_selection", 0, layer)
    assert m[80 - ly, 95 - lx] == 255 and m[5 - ly, 5 - lx] == 0  # the feathered selection
    assert ((m > 0) & (m < 255)).sum() > 500  # feathered, not a hard edge
    # check_layer held the mask to the library's alpha within 1/255; negative control: the same
    # coverage 2 px off misses that bound
    _, _, want_alpha = kh.expected_layer(out, "u8_soft_selection", 0, res["sent"][0], SEED, {})
    want_m = np.rint(want_alpha * 255).astype(int)
    assert np.abs(m - want_m).max() <= 1 and np.abs(np.roll(m, 2, axis=1) - want_m).max() > 1
    # the template document was closed and its file deleted
    assert res["documents_after"] == res["documents_before"]
    assert res["template_files"] == []


def test_the_transparency_mask_drives_the_composite_and_painting_it_changes_it(core):
    """Krita's composite: the layer over the source weighted by the mask (what the old group
    {"Selection", result clipped to it} gave), within 1/255; the mask painted black everywhere gives
    the image as before, painted white the result's pixels. Negative control: the white-mask
    composite fails the first bound (the mask's feathered ring matters)."""
    res = _case(core, "u8_soft_selection")
    _, out, _ = core
    lx, ly, lw, lh = res["layers"][0]["rect"]

    def composite(state):
        return kh.read_raw(out, f"u8_soft_selection.composite_{state}.raw", (H, W, 4), 8)[..., :3].astype(float)

    before = composite("before")
    layer = kh.read_raw(out, "u8_soft_selection.0.layer.raw", (lh, lw, 4), 8)[..., :3].astype(float)
    m = kh.coverage_of(out, "u8_soft_selection", 0, res["layers"][0])[..., None] / 255
    want = before.copy()
    want[ly:ly + lh, lx:lx + lw] = before[ly:ly + lh, lx:lx + lw] * (1 - m) + layer * m

    def diff(got):
        return np.abs(got - want).max()

    assert diff(composite("inserted")) <= 1.0, diff(composite("inserted"))
    assert np.abs(composite("mask_zero") - before).max() <= 1.0  # painted out: the image as before
    full = composite("mask_full")
    assert np.abs(full[ly:ly + lh, lx:lx + lw] - layer).max() <= 1.0  # painted in: the result everywhere
    assert diff(full) > 10, diff(full)  # negative control


def test_u16_document_goes_and_comes_back_as_16_bit(core):
    res = _check_layer(core, "u16_selection")
    assert res["sent"][0]["bit_depth"] == 16 and res["notes"] == []
    assert res["layers"][0]["space"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"]
    _, out, inputs = core
    x, y, w, h = res["sent"][0]["box"]
    assert np.array_equal(kh.read_raw(out, "u16_selection.0.sent.raw", (h, w, 4), 16), inputs["u16"][y:y + h, x:x + w])


def test_selection_hanging_off_the_canvas_edge(core):
    res = _check_layer(core, "selection_off_the_edge")
    x, y, w, h = res["sent"][0]["box"]
    assert x == 0 and y + h == H  # clipped at the left and bottom edges
    lx, ly, lw, lh = res["layers"][0]["rect"]
    assert lx >= 0 and ly >= 0 and lx + lw <= W and ly + lh <= H


@pytest.mark.parametrize("name, words", [("empty_selection", "selection is empty"),
                                         ("selection_outside_canvas", "outside the canvas")])
def test_empty_or_outside_selection_is_a_clear_message_and_no_job(core, name, words):
    res = _case(core, name)
    assert words in res["read_error"] and "sent" not in res
    assert res["layers_after"] == res["layers_before"]


def test_whole_layer_without_selection_keeps_the_layers_alpha(core):
    res = _check_layer(core, "layer_alpha_no_selection")
    assert res["sent"][0]["box"] == [40, 30, 100, 80] and not res["sent"][0]["mask"]
    assert res["layers_after"] == ["Background", "Patch", "Dermis (lite, 7)"] and not res["layers"][0]["mask"]
    _, out, inputs = core
    got = kh.read_raw(out, "layer_alpha_no_selection.0.layer.raw", (80, 100, 4), 8)
    assert np.abs(got[..., 3].astype(int) - inputs["patch"][..., 3]).max() <= 1


def test_whole_image_uses_the_merged_image_and_goes_on_top(core):
    res = _check_layer(core, "merged_whole_image")
    _, out, _ = core
    assert res["sent"][0]["box"] == [0, 0, W, H] and not res["sent"][0]["mask"]  # the selection is ignored
    merged = kh.read_raw(out, "merged_whole_image.merged.raw", (H, W, 4), 8)[..., [2, 1, 0, 3]]
    assert np.array_equal(kh.read_raw(out, "merged_whole_image.0.sent.raw", (H, W, 4), 8), merged)
    assert res["layers_after"] == ["Background", "Patch", "Dermis (lite, 7)", "Selection Mask"]


@pytest.mark.parametrize("name, tol", [("linear_u16_converted", 4), ("grey_u8_converted", 1)])
def test_other_colour_spaces_are_converted_on_a_copy(core, name, tol):
    res = _check_layer(core, name, overrides=IDENTITY)
    assert res["sent"][0]["wire"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"] and res["notes"]
    assert res["layers"][0]["space"] == res["doc_space"] == res["source_space"]  # back in the document's space
    # lite without texture or grain is an identity: inside the selection, the new layer must hold the
    # source's own values again after the two conversions
    _, out, _ = core
    lx, ly, lw, lh = res["layers"][0]["rect"]
    bits = 16 if res["doc_space"][1] == "U16" else 8
    ch = 4 if res["doc_space"][0] == "RGBA" else 2
    got = kh.read_raw(out, f"{name}.0.layer.raw", (lh, lw, ch), bits).astype(int)
    src = kh.read_raw(out, f"{name}.0.source_after.raw", (lh, lw, ch), bits).astype(int)
    inside = kh.coverage_of(out, name, 0, res["layers"][0]) > 0
    assert inside.sum() > 1000
    diff = np.abs(got - src)[inside][:, :-1]
    print(name, "max diff", diff.max(), "mean", diff.mean())
    assert diff.max() <= tol


def test_result_lands_above_its_source_after_edits(core):
    res = _check_layer(core, "edited_meanwhile")
    assert res["inserted"]["same_document"]  # not the document created (and active) meanwhile
    assert res["layers_after"] == ["Background", "Dermis (lite, 7)", "Meanwhile", "Selection Mask"]


def test_deleted_source_puts_the_result_on_top_and_says_so(core):
    res = _case(core, "source_deleted_meanwhile")
    assert res["job"]["phase"] == "done"
    assert [n for n in res["layers_after"] if n != "Selection Mask"] == ["Dermis (lite, 7)"]
    assert "was deleted" in res["message"]


def test_scale_above_1_opens_the_whole_image_as_a_new_document(core):
    res = _case(core, "scale_2_opens_a_new_document")
    assert res["job"]["phase"] == "done", res["job"]
    assert res["sent"][0]["box"] == [0, 0, W, H]  # the whole canvas, the selection as mask
    nd = res["new_document"]
    assert nd["size"] == [2 * W, 2 * H] and nd["layers"] == ["Dermis (lite, 7)"]
    assert res["result"]["canvas"] == [2 * W, 2 * H] and res["result"]["offset"] == [0, 0]
    assert res["layers_after"] == res["layers_before"] and res["source_unchanged"]
    from pipeline import build, images, run

    _, out, _ = core
    sent = kh.read_raw(out, "scale_2_opens_a_new_document.0.sent.raw", (H, W, 4), 8)
    mask = kh.read_raw(out, "scale_2_opens_a_new_document.0.sent_mask.raw", (H, W), 8)
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
    assert words in res["error"].lower() and "layers_after" not in res  # said in the docker; nothing inserted


# -- issue 17 ---------------------------------------------------------------------------------------
def test_detail_layer_in_grain_merge_keeps_colours_and_adds_the_texture(core):
    """The detail layer as Krita composites it: Grain Merge; at 100 % the normal result within 2/255
    where the source was not clipped; at 0 % the source exactly; its blur the source's within 1/255.
    Negative control: the same layer in Normal mode fails both bounds."""
    res = _case(core, "detail_layer")
    _, out, _ = core
    assert res["top"] == {"name": "Dermis detail (lite, 7)", "type": "paintlayer", "blend": "grain_merge",
                          "opacity": 255}
    assert res["sent"][0]["content"] == "detail" and res["result"]["content"] == "detail"
    src = kh.read_raw(out, "detail_layer.composite_before.raw", (H, W, 4), 8)[..., [2, 1, 0]] / 255
    # the normal result, from the library on the same pixels, composited in Normal mode
    normal, (ox, oy), alpha = kh.expected_layer(out, "detail_layer", 0, res["sent"][0], SEED, {}, content="normal")
    x, y = res["sent"][0]["box"][:2]
    want = normal_composite(src, normal[..., :3] / 255, alpha, (x + ox, y + oy))
    inside = judged_pixels(src, alpha, (x + ox, y + oy))

    def composite(state):
        return kh.read_raw(out, f"detail_layer.composite_{state}.raw", (H, W, 4), 8)[..., [2, 1, 0]] / 255

    check_composites("Krita", src, want, inside, composite("inserted"), composite("opacity0"), composite("normal_mode"))


def test_feather_and_context_come_from_the_docker(core):
    res = _check_layer(core, "feather_and_context", overrides={"feather": "4", "context": "160"})
    assert res["sent"][0]["overrides"] == {"feather": "4", "context": "160"}
    assert res["padding"] == 192  # context + 32: the daemon's crop never reaches the sent edge


def test_islands_and_seeds_become_one_group_with_a_layer_per_island(core):
    res = _case(core, "two_islands_two_seeds")
    assert [s["label"] for s in res["sent"]] == ["island 1 of 2", "island 2 of 2"] * 2
    assert [s["seed"] for s in res["sent"]] == [7, 7, 8, 8]
    for k in range(4):
        _check_layer(core, "two_islands_two_seeds", k=k)
    # each island went with only its own pixels selected, and came back from its own context crop
    _, out, inputs = core
    for k, (x0, y0, x1, y1) in enumerate(((110, 90, 180, 150), (20, 20, 80, 70))):
        x, y, w, h = res["sent"][k]["box"]
        mask = kh.read_raw(out, f"two_islands_two_seeds.{k}.sent_mask.raw", (h, w), 8)
        own = np.zeros((H, W), bool)
        own[y0:y1, x0:x1] = True
        assert (mask[~own[y:y + h, x:x + w]] == 0).all() and mask.any()
        lx, ly, lw, lh = next(e["rect"] for e in res["layers"] if e["job"] == k)
        assert x0 - 64 - 24 <= lx <= x0 and lx + lw <= x1 + 64 + 24 and lw < W  # context 64 + feather
    top = res["tree"][1]
    assert top[0] == "Dermis (lite, seeds 7, 8)" and top[1] == "grouplayer"
    seeds = top[3]  # Krita lists children bottom first
    assert [(g[0], g[2]) for g in reversed(seeds)] == [("Dermis (lite, 7)", True), ("Dermis (lite, 8)", False)]
    first = list(reversed(seeds[-1][3]))
    assert [c[0] for c in first] == ["Dermis (lite, 7) island 1 of 2", "Dermis (lite, 7) island 2 of 2"]
    assert first[0][1] == "paintlayer" and first[0][3] == [["Selection", "transparencymask", True, []]]  # its own mask
    assert res["source_unchanged"]


def test_variations_are_layers_named_by_seed_only_the_first_visible(core):
    res = _case(core, "three_variations")
    top = res["tree"][1]
    assert top[0] == "Dermis (lite, seeds 7, 8, 9)"
    assert [(c[0], c[1], c[2]) for c in reversed(top[3])] == [("Dermis (lite, 7)", "paintlayer", True),
                                                              ("Dermis (lite, 8)", "paintlayer", False),
                                                              ("Dermis (lite, 9)", "paintlayer", False)]
    for k in range(3):
        _check_layer(core, "three_variations", k=k)


def test_islands_off_sends_one_job(core):
    res = _case(core, "islands_off")
    assert len(res["sent"]) == 1 and res["layers_after"] == ["Background", "Dermis (lite, 7)", "Selection Mask"]
    _check_layer(core, "islands_off")


def test_each_detected_face_becomes_a_job(core):
    from pipeline import images
    from pipeline.skin import faces_with_skin

    res = _case(core, "two_faces")
    assert [s["label"] for s in res["sent"]] == ["face 1 of 2", "face 2 of 2"], res.get("error")
    faces = [f.box for f in faces_with_skin(images.from_array(core[2]["faces"][..., :3]).rgb)]
    assert len(faces) == 2
    for sent in res["sent"]:  # each job's box holds one face, not the other
        x, y, w, h = sent["box"]
        inside = [fx0 >= x and fx1 <= x + w for fx0, _, fx1, _ in faces]
        assert inside.count(True) == 1, (sent["box"], faces)
    assert res["tree"][1][0] == "Dermis (lite, 7)" and len(res["tree"][1][3]) == 2
    for k in range(2):
        _check_layer(core, "two_faces", k=k)

