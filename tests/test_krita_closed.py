"""A document closed while its run works, in real Krita under kritarunner against the real daemon:
the result goes into a new, unsaved document like the closed one (size, colour model, depth,
profile, resolution), over a layer of the pixels that were sent, inserted by the same code as into
an open document (a layer with its transparency mask, the group for islands and seeds, the detail
layer in Grain Merge), and the message names both documents. Each result there is checked byte for
byte against what the daemon returned, and against ``pipeline.run`` on the pixels sent. The same
fixtures as test_krita_editor.py, with this module's cases (one kritarunner process for them);
the new view in Krita's window is test_krita_gui.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import _krita_helpers as kh
from tests import test_krita_editor as editor
from tests.test_krita_editor import ELLIPSE, IDENTITY, SEED, H, W, _case

pytestmark = pytest.mark.editor
# the editor test's module-scoped fixtures, run again here with this module's CASES
base, daemon, pykrita, core = editor.base, editor.daemon, editor.pykrita, editor.core

CASES = [
    dict(name="document_closed_meanwhile", depth="U8", profile="", selection=ELLIPSE, padding=16,
         meanwhile="close_document"),
    dict(name="closed_linear_islands_seeds", depth="U16", profile="", overrides=IDENTITY, variations=2,
         selection={"rect": [0, 0, W, H], "mask": "two_islands.raw"}, padding=16, meanwhile="close_document"),
    dict(name="closed_while_inserting", depth="U8", profile="", variations=2, selection={"rect": [60, 40, 50, 50]},
         padding=16, meanwhile="close_while_inserting"),
    dict(name="closed_resumed_run", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         meanwhile="close_document_of_a_resumed_run"),
    dict(name="closed_detail_layer", depth="U8", profile="", selection={"rect": [60, 40, 50, 50]},
         content="detail", strength=60, meanwhile="close_document"),
]


def _closed(core, name: str, read: bool = True) -> dict:
    """A case whose document was closed mid-run: the result is in a new, unsaved document like it
    (size, colour space, resolution), shown with a message naming both documents; ``read``: over a
    layer of what was read."""
    res = _case(core, name)
    assert all(j["phase"] == "done" for j in res["jobs"]) and res["error"] == "", (res["jobs"], res["error"])
    nd = res["new_document"]
    assert nd["open"] and nd["size"] == [W, H] and nd["space"] == res["space_before"] and nd["resolution"] == 72
    assert nd["file"] == "" and nd["modified"]  # not saved: Krita asks before closing it
    assert nd["name"] == f"{name} (Dermis)"
    assert nd["layers"] == (["Background (what Dermis read)"] if read else []) + [res["top"]["name"]]  # right above it
    under = ("over the part of 'Background' it was made from" if read else
             "without the pixels of 'Background' it was made from (a run resumed after Krita restarted")
    assert (f"The image '{name}' was closed while Dermis worked. The result is in a new image, '{name} (Dermis)', "
            f"{under}") in res["message"], res["message"]
    assert "not saved yet" in res["message"] and "no window to show it in" in res["message"]  # kritarunner
    assert all(e["space"] == nd["space"] for e in res["layers"])
    return res


def _read_layer(core, name: str, res: dict) -> tuple[np.ndarray, np.ndarray]:
    """(the new document's layer of what was read, the sent pixels at their places on a transparent
    canvas), both R,G,B,A at the sent depth."""
    _, out, _ = core
    bits = res["sent"][0]["bit_depth"]
    want = np.zeros((H, W, 4), np.uint16 if bits == 16 else np.uint8)
    for k, sent in enumerate(res["sent"]):  # each part once per seed: the same pixels
        x, y, w, h = sent["box"]
        want[y:y + h, x:x + w] = kh.read_raw(out, f"{name}.{k}.sent.raw", (h, w, 4), bits)
    got = kh.read_raw(out, f"{name}.read_layer.raw", (H, W, 4), bits)[..., [2, 1, 0, 3]]
    return got, want


def _as_the_daemon_sent_it(core, name: str, res: dict, k: int) -> None:
    """Job ``k``'s layer in the new document is byte for byte the daemon's result: its colours, and
    its alpha in the transparency mask. Negative control: the result one pixel off is not."""
    _, out, _ = core
    entry = next(e for e in res["layers"] if e["job"] == k)
    lx, ly, lw, lh = entry["rect"]
    sent_back = kh.read_raw(out, f"{name}.{k}.result.raw", (lh, lw, 4), 8).astype(int)
    got = kh.read_raw(out, f"{name}.{k}.layer.raw", (lh, lw, 4), 8)[..., [2, 1, 0, 3]].astype(int)
    assert entry["mask"] and (got[..., 3] == 255).all()
    assert np.array_equal(got[..., :3], sent_back[..., :3])
    assert np.array_equal(kh.coverage_of(out, name, k, entry), sent_back[..., 3])
    assert not np.array_equal(got[..., :3], np.roll(sent_back[..., :3], 1, axis=1))


def test_closed_document_gets_the_result_in_a_new_document_over_what_was_read(core):
    name = "document_closed_meanwhile"
    res = _closed(core, name)
    _, out, inputs = core
    assert res["tree"] == [["Background (what Dermis read)", "paintlayer", True, []],
                           ["Dermis (lite, 7)", "paintlayer", True, [["Selection", "transparencymask", True, []]]]]
    # the bottom layer holds exactly the pixels that were sent (the closed document's), the rest is
    # transparent; negative control: the same pixels one to the right are not it
    got, want = _read_layer(core, name, res)
    x, y, w, h = res["sent"][0]["box"]
    assert np.array_equal(want[y:y + h, x:x + w], inputs["u8"][y:y + h, x:x + w]) and (w, h) != (W, H)
    assert np.array_equal(got, want) and not np.array_equal(got, np.roll(want, 1, axis=1))
    # the result: what the library gives on the sent pixels (place, colour, coverage), and exactly
    # what the daemon returned
    kh.check_layer(dict(res, source_unchanged=np.array_equal(got, want)), out, name, k=0, seed=SEED, overrides={})
    _as_the_daemon_sent_it(core, name, res, 0)
    assert res["top"] == {"name": "Dermis (lite, 7)", "type": "paintlayer", "blend": "normal", "opacity": 255}


def test_closed_linear_document_gets_its_islands_and_seeds_group_in_a_new_linear_document(core):
    """The group for parts and seeds, converted back to the closed document's colour space: with lite
    as an identity, both the layer of what was read and each result hold the document's own pixels
    again, within the conversions' rounding (4/65535, as the open document's case); negative control:
    the document's pixels 3 px off miss that bound."""
    name = "closed_linear_islands_seeds"
    res = _closed(core, name)
    _, out, inputs = core
    assert res["space_before"][:2] == ["RGBA", "U16"] and res["sent"][0]["wire"][2] != res["space_before"][2]
    assert [s["seed"] for s in res["sent"]] == [7, 7, 8, 8]
    mask = [["Selection", "transparencymask", True, []]]
    seeds = [[f"Dermis (lite, {seed})", "grouplayer", seed == 7,  # Krita lists children bottom first
              [[f"Dermis (lite, {seed}) island {i} of 2", "paintlayer", True, mask] for i in (2, 1)]]
             for seed in (8, 7)]
    assert res["tree"][1] == ["Dermis (lite, seeds 7, 8)", "grouplayer", True, seeds]  # as in an open document
    doc = inputs["u16"].astype(int)
    read = kh.read_raw(out, f"{name}.read_layer.raw", (H, W, 4), 16).astype(int)  # B,G,R,A
    for sent in res["sent"][:2]:
        x, y, w, h = sent["box"]
        box = read[y:y + h, x:x + w, [2, 1, 0]]
        assert np.abs(box - doc[y:y + h, x:x + w, :3]).max() <= 4
        assert np.abs(box - np.roll(doc, 3, axis=1)[y:y + h, x:x + w, :3]).max() > 4
    read_area = np.zeros((H, W), bool)
    for x, y, w, h in (s["box"] for s in res["sent"]):
        read_area[y:y + h, x:x + w] = True
    assert not read_area.all() and np.array_equal(read[..., 3] > 0, read_area)  # the rest is empty
    for k, entry in enumerate(res["layers"]):
        lx, ly, lw, lh = entry["rect"]
        got = kh.read_raw(out, f"{name}.{entry['job']}.layer.raw", (lh, lw, 4), 16)[..., [2, 1, 0]].astype(int)
        inside = kh.coverage_of(out, name, entry["job"], entry) > 0
        assert inside.sum() > 500, k
        assert np.abs(got - doc[ly:ly + lh, lx:lx + lw, :3])[inside].max() <= 4


def test_closed_document_gets_the_detail_layer_in_grain_merge_at_its_strength(core):
    name = "closed_detail_layer"
    res = _closed(core, name)
    assert res["top"] == {"name": "Dermis detail (lite, 7)", "type": "paintlayer", "blend": "grain_merge",
                          "opacity": 153}  # 60 %
    got, want = _read_layer(core, name, res)
    assert np.array_equal(got, want)
    _as_the_daemon_sent_it(core, name, res, 0)


def test_document_closed_while_the_result_is_being_inserted_gets_it_in_a_new_document(core):
    """Closed between two of the insertion's steps (the layers half filled, detached): the insertion
    starts again in a new document, and each variation there is byte for byte the daemon's."""
    name = "closed_while_inserting"
    res = _closed(core, name)
    assert res["closed_after_steps"]["before_close"] == 3 and res["closed_after_steps"]["after_close"] > 0  # mid-way
    assert [(c[0], c[2]) for c in reversed(res["tree"][1][3])] == [("Dermis (lite, 7)", True), ("Dermis (lite, 8)", False)]
    got, want = _read_layer(core, name, res)
    assert np.array_equal(got, want)
    for k in range(2):
        _as_the_daemon_sent_it(core, name, res, k)


def test_closed_document_of_a_resumed_run_gets_the_result_alone(core):
    """A run restored after a restart of Krita has not got the pixels it sent: the new document holds
    the result alone, byte for byte the daemon's, and the message says why."""
    name = "closed_resumed_run"
    res = _closed(core, name, read=False)
    assert res["tree"] == [["Dermis (lite, 7)", "paintlayer", True, [["Selection", "transparencymask", True, []]]]]
    _as_the_daemon_sent_it(core, name, res, 0)
