"""What the two editor plug-ins share in proto/ (no editor here): the override parser with the GIMP
field's separators, selection islands and faces -> jobs, progress text, hints, defaults."""

from __future__ import annotations

import random

import numpy as np
import pytest

from proto import client as dc
from proto import editors, islands
from proto.overrides import OverrideError, parse_overrides, split_overrides

# ------------------------------------------------------------------------------------ overrides

SET_ITEMS = [  # what `dermis upscale --set` takes, one item per flag
    "grain.strength=0.05",
    "scale=1.5",
    "context = 96",
    "feather=24",
    "refine.prompt=a photograph, natural skin; visible pores, fine hair",
    "final.prompt=key=value inside a value",
    "face_restore.enabled=true",
    "skin_detail.model=/models/upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth",
]


@pytest.mark.parametrize("sep", [", ", "; ", "\n", ",", " ;\n"])
def test_a_gimp_field_takes_everything_set_takes(sep):
    """Joined with any separator the field allows, the items parse exactly as --set parses them."""
    want = parse_overrides(SET_ITEMS)
    assert parse_overrides(split_overrides(sep.join(SET_ITEMS))) == want
    assert want["refine.prompt"] == "a photograph, natural skin; visible pores, fine hair"


def test_the_old_naive_split_would_have_broken_prompts():
    """Negative control: splitting on every comma (the GIMP plug-in's parser before) loses the prompt."""
    import re

    naive = [i.strip() for i in re.split(r"[,;\n]", ", ".join(SET_ITEMS)) if i.strip()]
    with pytest.raises(OverrideError):
        parse_overrides(naive)


def test_bad_items_are_still_refused():
    for text in ("grain.strength", "grain.strength=0.1, =1", "=3"):
        with pytest.raises(OverrideError, match="key=value"):
            parse_overrides(split_overrides(text))


# -------------------------------------------------------------------------------------- islands


def _mask(w: int, h: int, rects: list[tuple[int, int, int, int]], value: int = 255) -> bytes:
    m = bytearray(w * h)
    for x, y, rw, rh in rects:
        for yy in range(y, y + rh):
            m[yy * w + x : yy * w + x + rw] = bytes([value]) * rw
    return bytes(m)


def test_islands_are_found_largest_first_with_exact_boxes():
    w, h = 300, 200
    mask = _mask(w, h, [(10, 10, 40, 30), (150, 60, 100, 120), (60, 150, 5, 5)])
    isl = islands.find_islands(mask, w, h)
    assert isl.boxes == [(150, 60, 100, 120), (10, 10, 40, 30), (60, 150, 5, 5)]
    # every selected pixel belongs to exactly one island; together they are the selection
    total = bytearray(w * h)
    for i in range(isl.count):
        part = isl.mask_of(mask, i, (0, 0, w, h))
        assert all(not (a and b) for a, b in zip(part, total, strict=True))
        total = bytearray(max(a, b) for a, b in zip(part, total, strict=True))
    assert bytes(total) == mask


def test_touching_parts_are_one_island_and_too_many_become_one_job():
    w, h = 200, 100
    assert islands.find_islands(_mask(w, h, [(10, 10, 50, 50), (59, 59, 20, 20)]), w, h).count == 1  # diagonal
    speckles = _mask(w, h, [(x, y, 2, 2) for x in range(0, 200, 10) for y in range(0, 100, 10)])
    isl = islands.find_islands(speckles, w, h)
    assert isl.count == 1 and isl.boxes == [(0, 0, 192, 92)]


def test_split_pads_each_island_and_keeps_its_own_pixels_only():
    w, h = 400, 300
    mask = _mask(w, h, [(20, 20, 60, 60), (250, 150, 100, 100)], value=200)
    parts, notes = islands.split(mask, w, h, padding=40)
    assert [p.box for p in parts] == [(210, 110, 180, 180), (0, 0, 120, 120)] and not notes
    assert [p.label for p in parts] == ["island 1 of 2", "island 2 of 2"]
    big = parts[0]
    assert big.mask is not None and len(big.mask) == 180 * 180
    assert big.mask.count(200) == 100 * 100 and big.mask.count(0) == 180 * 180 - 100 * 100
    one, _ = islands.split(mask, w, h, padding=40, islands=False)  # separate islands off: one job
    assert [p.box for p in one] == [(0, 0, 390, 290)] and one[0].mask.count(200) == 2 * 0 + 60 * 60 + 100 * 100
    whole, _ = islands.split(None, w, h, padding=40)
    assert [(p.box, p.mask) for p in whole] == [((0, 0, w, h), None)]


def test_split_by_faces_takes_the_selected_part_of_each_grown_face():
    w, h = 400, 300
    mask = _mask(w, h, [(0, 0, 200, 300)])  # the left half is selected
    faces = [(40, 50, 80, 80), (260, 60, 80, 80), (150, 200, 60, 60)]  # the middle one is outside
    parts, notes = islands.split(mask, w, h, padding=20, faces=faces)
    assert [p.label for p in parts] == ["face 1 of 2", "face 2 of 2"] and not notes
    grown = (40 - 28, 50 - 28, 80 + 56, 80 + 56)
    assert parts[0].box == islands.pad_box(grown, 20, w, h)
    assert parts[0].mask.count(255) == grown[2] * grown[3]
    assert parts[1].mask.count(255) == (200 - (150 - 21)) * (60 + 2 * 21)  # grown face ∩ selection
    none, notes = islands.split(mask, w, h, padding=20, faces=[])
    assert len(none) == 1 and "no face was found" in notes[0]


def test_islands_of_a_4k_selection_take_well_under_a_second():
    import time

    w = h = 4096
    m = bytearray(w * h)
    for cx, cy, r in ((1000, 1000, 500), (3000, 2500, 300)):
        for y in range(cy - r, cy + r):
            half = int(r * max(0.0, 1 - ((y - cy) / r) ** 2) ** 0.5)
            m[y * w + cx - half : y * w + cx + half] = b"\xff" * (2 * half)
    t0 = time.perf_counter()
    parts, _ = islands.split(bytes(m), w, h, padding=128)
    took = time.perf_counter() - t0
    assert len(parts) == 2
    print(f"islands of a 4096² selection: {took:.2f} s")
    assert took < 3.0  # generous: a loaded 2-core machine; ~0.4 s measured idle


def test_crop_takes_rows_of_any_pixel_size():
    w, h = 7, 5
    data = bytes(random.Random(1).randrange(256) for _ in range(w * h * 8))
    got = islands.crop(data, w, (2, 1, 3, 2), pixel_bytes=8)
    assert got == data[(1 * w + 2) * 8 : (1 * w + 5) * 8] + data[(2 * w + 2) * 8 : (2 * w + 5) * 8]


def test_a_large_crop_goes_row_by_row_and_the_whole_picture_is_not_copied():
    w, h, px = 1024, 700, 8  # 5.5 MiB: over the one-copy size, so the row-by-row path
    data = bytearray(np.random.default_rng(2).integers(0, 256, w * h * px, dtype=np.uint8).tobytes())
    ref = np.frombuffer(data, np.uint8).reshape(h, w * px)
    for box in [(0, 3, w, h - 5), (5, 2, w - 9, h - 4)]:
        x, y, bw, bh = box
        got = islands.crop(data, w, box, pixel_bytes=px)
        assert bytes(got) == ref[y:y + bh, x * px:(x + bw) * px].tobytes()
    assert islands.crop(data, w, (0, 0, w, h), pixel_bytes=px) is data
    assert bytes(islands.crop(data, w, (1, 0, w - 1, h), pixel_bytes=px)) != bytes(data[:(w - 1) * h * px])


# ---------------------------------------------------------------------------- text and defaults


def _ev(kind, **kw):
    return dc.Event(dc.EventKind(kind), "j", 1, **kw)


def test_one_progress_text_for_both_editors():
    assert editors.event_text(_ev("queued", position=0)) == "Queued: next"
    assert editors.event_text(_ev("queued", position=2)) == "Queued: 2 job(s) ahead"
    assert editors.event_text(_ev("stage", stage="grain", message="grain: started")) == "grain: started"
    ev = _ev("progress", stage="supir", step=13, steps=45, tile=2, tiles=6, fraction=0.5)
    assert editors.event_text(ev) == "supir: tile 2/6, step 13/45 (50%)"
    assert editors.event_text(_ev("preview")) is None and editors.event_text(_ev("done")) == "Inserting the result"
    dl = _ev("progress", stage="sdxl", message="x.safetensors (file 1 of 2): 1.0 MB of 6.9 MB", fraction=0.12)
    assert editors.download_text(dl) == "sdxl: x.safetensors (file 1 of 2): 1.0 MB of 6.9 MB (12%)"


def test_hints_name_each_editors_own_controls():
    k, g = editors.hint("missing_weights", "krita"), editors.hint("missing_weights", "gimp")
    assert "Dermis docker" in k and "Filters → Enhance → Dermis" in g and "lite" in k and "lite" in g
    assert "dermis install-plugin krita" in editors.hint("dependency_missing", "krita")
    assert "--python-version" in editors.hint("dependency_missing", "gimp")
    assert editors.hint("no_such_code", "krita") == ""
    e = dc.DaemonUnavailable("No Dermis daemon answered at x.")
    assert editors.explain(e, "gimp") == "No Dermis daemon answered at x. " + editors.hint("unavailable", "gimp")
    said = "No daemon there. Start it with `dermis serve`."  # the client's words name the command already
    assert editors.with_hint(said, "unavailable", "krita") == said + " Or check the address in the Dermis docker."
    assert editors.describe_error(ValueError("x")).startswith("Unexpected error (ValueError): x")


def test_defaults_from_the_daemons_preset_info():
    lite = dc.PresetInfo("lite", "lite", "", 2.0, [dc.StageInfo("grain", "grain", True, False, {})], 64, 16.0)
    srpo = dc.PresetInfo("supir-srpo", "s", "", 2.0, [
        dc.StageInfo("supir", "supir", True, False, {}),
        dc.StageInfo("refine", "flux_refine", True, False, {"denoise": "0.3"}),
        dc.StageInfo("final", "flux_refine", True, False, {"denoise": "0.45"})], 96, 24.0)
    assert editors.denoise_stages(lite) == [] and editors.denoise_stages(srpo) == ["refine", "final"]
    assert editors.preset_defaults(srpo) == {"context": 96, "feather": 24.0}
    assert editors.padding_for(64) == 128 and editors.padding_for(200) == 232 and editors.padding_for(None) == 128
    assert editors.variation_seeds(7, 3) == [7, 8, 9] and editors.variation_seeds(editors.SEED_MAX, 2) == [
        editors.SEED_MAX, 0]
    assert len(editors.variation_seeds(1, 99)) == editors.MAX_VARIATIONS
