"""Rows of the 4096x4096 run's pixels written out for the GUI test (numpy is not in Krita's Python)."""

from __future__ import annotations


def dump_rows(b: dict, doc, bg, run) -> dict:
    """Every ``rows_every``-th row of the area the run read: what was sent to the daemon, the inserted
    result layer and the source, as raw files for the test to compare (numpy is not in Krita)."""
    if not b.get("rows_out"):
        return {}
    t, every = run.target, b["rows_every"]
    px, py, w, h = run.jobs[0].context.box  # the one part's box in the area read
    x, y = t.x + px, t.y + py
    rows = list(range(0, h, every))
    sent = memoryview(run.jobs[0].request.pixels)
    stride = len(sent) // h
    result = find_paint_layer(doc.rootNode(), lambda n: n.name().startswith("Dermis"))
    with open(b["rows_out"] + ".sent.raw", "wb") as f:
        for r in rows:
            f.write(sent[r * stride:(r + 1) * stride])
    for what, node in (("layer", result), ("source", bg)):
        with open(b["rows_out"] + f".{what}.raw", "wb") as f:
            for r in rows:
                f.write(bytes(node.pixelData(x, y + r, w, 1)))
    return {"box": [x, y, w, h], "rows": len(rows), "wire": list(t.wire_space),
            "notes": run.notes}


def find_paint_layer(parent, want):
    for child in parent.childNodes():
        if child.type() == "paintlayer" and want(child):
            return child
        found = find_paint_layer(child, want)
        if found is not None:
            return found
    return None
