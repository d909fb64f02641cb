"""kritarunner driver: the Dermis plugin's controller inside real Krita, against the real daemon.

Called as ``kritarunner -s kr_core -f main SPEC.json`` with the installed plugin (``dermis_krita``,
vendored client and wheels) on PYTHONPATH. For each case of the spec it builds a document and lets
the plugin's own ``Controller`` do what the menu entry does (``refine_on``: read the layer and the
selection, split it into jobs, run them through the vendored client, insert the results), pumping
its timer function by hand (kritarunner has no event loop; the GUI test covers the timers). Then it
dumps what happened (pixels sent, the layer tree, each new layer's pixels and mask, composites) for
test_krita_editor.py to check against ``pipeline.run``. kritarunner exits 0 whatever happens, so the
result is a JSON file plus ``os._exit``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


def main(args: list) -> None:
    spec = json.loads(Path(args[0]).read_text())
    out_dir = Path(spec["out"])
    report: dict = {"cases": {}}
    code = 0
    try:
        import dermis_krita
        from dermis_krita import controller
        from krita import Krita

        report["plugin_file"] = dermis_krita.__file__
        report["krita"] = Krita.instance().version()
        report["python"] = f"{sys.version_info[0]}.{sys.version_info[1]}"
        ctl = controller.instance()
        ctl.refresh()
        if not wait(ctl, lambda: not ctl.connecting, 60) or not ctl.server_ok:
            raise RuntimeError(f"no daemon: {ctl.server_text}")
        for case in spec["cases"]:
            try:
                report["cases"][case["name"]] = run_case(case, out_dir, ctl)
            except Exception:
                report["cases"][case["name"]] = {"crash": traceback.format_exc()}
                code = 2
    except Exception:
        report["crash"] = traceback.format_exc()
        code = 2
    tmp = out_dir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, out_dir / "report.json")
    os._exit(code)


def wait(ctl, cond, timeout: float) -> bool:
    """Run the controller's timer function until ``cond()`` (kritarunner has no event loop)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        ctl._tick()
        time.sleep(0.01)
    return True


def build(case: dict, out_dir: Path):
    from krita import Krita, Selection

    app = Krita.instance()
    w, h = case["width"], case["height"]
    doc = app.createDocument(w, h, case["name"], case.get("model", "RGBA"), case["depth"], case.get("profile", ""),
                             72.0)
    bg = doc.rootNode().childNodes()[0]
    bg.setName("Background")
    bg.setPixelData((out_dir / case["image"]).read_bytes(), 0, 0, w, h)
    source = bg
    if case.get("patch"):  # a partly transparent layer of its own, on top of the background
        x, y, pw, ph = case["patch"]["rect"]
        source = doc.createNode("Patch", "paintlayer")
        source.setPixelData((out_dir / case["patch"]["image"]).read_bytes(), x, y, pw, ph)
        doc.rootNode().addChildNode(source, bg)
    if case.get("above"):
        top = doc.createNode("Above", "paintlayer")
        doc.rootNode().addChildNode(top, source)
    sel_spec = case.get("selection")
    if sel_spec is not None:
        sel = Selection()
        if "mask" in sel_spec:
            x, y, mw, mh = sel_spec["rect"]
            sel.setPixelData((out_dir / sel_spec["mask"]).read_bytes(), x, y, mw, mh)
        elif "rect" in sel_spec:
            sel.select(*sel_spec["rect"], 255)
        doc.setSelection(sel)
    doc.refreshProjection()
    doc.waitForDone()
    return doc, bg, source


def run_case(case: dict, out_dir: Path, ctl) -> dict:
    from dermis_krita.thin_client import client as dc
    from krita import Krita

    app = Krita.instance()
    name, w, h = case["name"], case["width"], case["height"]
    doc, bg, source = build(case, out_dir)
    res: dict = {}
    source_before = bytes(source.pixelData(0, 0, w, h))
    res["documents_before"] = len(app.documents())
    res["space_before"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    res["layers_before"] = names(doc)
    if case.get("whole_image"):
        (out_dir / f"{name}.merged.raw").write_bytes(bytes(doc.pixelData(0, 0, w, h)))
    (out_dir / f"{name}.composite_before.raw").write_bytes(bytes(doc.pixelData(0, 0, w, h)))

    # 1. the settings of the docker, then what the menu entry does
    s = ctl.settings
    s.preset, s.seed, s.scale = case["preset"], case["seed"], case.get("scale", 1.0)
    s.content, s.strength = case.get("content", "normal"), case.get("strength", 100)
    s.variations, s.islands, s.faces = case.get("variations", 1), case.get("islands", True), case.get("faces", False)
    s.overrides = dict(case.get("settings_overrides", {}))  # the docker's preset controls (feather, context)
    ask = ctl.ask()
    ask.overrides.update(case.get("overrides", {}))  # any setting, not only the docker's controls
    if "padding" in case:
        ask.padding = case["padding"]
    client_args = case.get("client")  # a wrong address or token, for the error cases
    ctl.connect_client = (lambda: dc.Client(**client_args)) if client_args else type(ctl).connect_client.__get__(ctl)
    ctl.last_error = ctl.last_message = ""
    before_runs = ctl.run_count
    started = ctl.refine_on(doc, source, whole_image=case.get("whole_image", False), ask=ask)
    if not started:
        res["read_error"] = ctl.last_error
        res["layers_after"] = names(doc)
        return res
    if ctl.run_count == before_runs:  # looking for faces first
        if not wait(ctl, lambda: ctl.run_count > before_runs or not ctl._preparing, 60):
            res["error"] = "the face search did not answer"
            return res
    # a job that fails at once (no daemon) may end its run within the tick that started it
    run = next((r for r in [*ctl.runs, ctl.last_run] if r is not None and r.number > before_runs), None)
    if run is None:
        res["read_error"] = ctl.last_error
        res["layers_after"] = names(doc)
        return res
    t = run.target
    res["sent"] = []
    for k, job in enumerate(run.jobs):
        bx, by, bw, bh = job.context.box
        r = job.request
        (out_dir / f"{name}.{k}.sent.raw").write_bytes(r.pixels)
        if r.mask is not None:
            (out_dir / f"{name}.{k}.sent_mask.raw").write_bytes(r.mask)
        res["sent"].append({"box": [t.x + bx, t.y + by, bw, bh], "bit_depth": r.bit_depth, "wire": list(t.wire_space),
                            "mask": r.mask is not None, "seed": r.seed, "label": job.context.label,
                            "overrides": r.overrides, "content": r.content})
    res["notes"] = run.notes
    res["padding"] = ask.padding

    # 2. what the user does meanwhile
    edit = case.get("meanwhile")
    if edit == "add_layer_above_and_new_document":
        other = doc.createNode("Meanwhile", "paintlayer")
        source.parentNode().addChildNode(other, source)  # now directly above the source
        app.createDocument(32, 32, "another", "RGBA", "U8", "", 72.0)
    elif edit == "close_document":
        doc.setModified(False)
        doc.close()
    elif edit == "delete_source":
        source.remove()
    elif edit == "close_while_inserting":
        res["closed_after_steps"] = close_while_inserting(ctl, run, doc)
    elif edit == "close_document_of_a_resumed_run":
        res["closed_after_steps"] = close_while_inserting(ctl, run, doc, after=0, resumed=True)
    t0 = time.monotonic()
    if not wait(ctl, lambda: run.handled, 180):
        res["job_error"] = "the run did not finish within 180 s"
        return res
    res["seconds"] = round(time.monotonic() - t0, 3)
    res["jobs"] = [{"phase": j.phase.value, "error": j.error, "code": j.error_code, "messages": j.messages}
                   for j in run.jobs]
    res["job"] = res["jobs"][0]
    res["message"], res["error"] = ctl.last_message, ctl.last_error
    done = [j for j in run.jobs if j.result is not None]
    res["results"] = [{"layer_name": j.result.layer_name, "offset": [j.result.offset_x, j.result.offset_y],
                       "size": [j.result.width, j.result.height], "seed": j.result.seed,
                       "canvas": [j.result.canvas_width, j.result.canvas_height], "content": j.result.content}
                      for j in done]
    if done:
        res["result"] = res["results"][0]
    if not done:
        return res
    if edit in ("close_document", "close_while_inserting", "close_document_of_a_resumed_run"):  # the result is in a new document: dump that one
        doc, source, source_before = closed_case(res, out_dir, name, ctl, run)
    if case.get("scale", 1.0) != 1.0:
        r = done[0].result
        new_doc = ctl.last_placed[0].document
        new_doc.waitForDone()
        res["new_document"] = {"open": True, "size": [new_doc.width(), new_doc.height()], "layers": names(new_doc),
                               "name": new_doc.name()}
        (out_dir / f"{name}.new_document.raw").write_bytes(bytes(new_doc.pixelData(0, 0, r.width, r.height)))
        res["layers_after"] = names(doc)
        res["source_unchanged"] = bytes(source.pixelData(0, 0, w, h)) == source_before
        return res

    # 3. what was inserted
    doc.waitForDone()
    res["layers_after"] = names(doc)
    res["tree"] = tree(doc.rootNode())
    top = next(n for n in doc.rootNode().childNodes() if n.name().startswith("Dermis"))
    res["top"] = {"name": top.name(), "type": top.type(), "blend": top.blendingMode(), "opacity": top.opacity()}
    res["doc_space"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    res["layers"] = []
    for k, job in enumerate(run.jobs):
        if job.result is None:
            continue
        r = job.result
        node = _find_layer(top, run.layer_name(job))
        x, y = t.x + job.context.box[0] + r.offset_x, t.y + job.context.box[1] + r.offset_y
        unit = node.parentNode()
        entry = {"name": node.name(), "rect": [x, y, r.width, r.height], "type": node.type(),
                 "space": [node.colorModel(), node.colorDepth(), node.colorProfile()], "job": k,
                 "children": [(c.name(), c.type()) for c in node.childNodes()],
                 "unit": [unit.name(), unit.type(), unit.visible(), [(c.name(), c.type()) for c in unit.childNodes()]]}
        (out_dir / f"{name}.{k}.layer.raw").write_bytes(bytes(node.pixelData(x, y, r.width, r.height)))
        mask = [c for c in node.childNodes() if c.type() == "transparencymask"]
        if mask:  # the editable selection: 1 byte a pixel
            (out_dir / f"{name}.{k}.mask.raw").write_bytes(bytes(mask[0].pixelData(x, y, r.width, r.height)))
        entry["mask"] = bool(mask)
        if source is not None:  # None: a closed case whose new document has no layer of what was read
            (out_dir / f"{name}.{k}.source_after.raw").write_bytes(bytes(source.pixelData(x, y, r.width, r.height)))
        res["layers"].append(entry)
    res["inserted"] = {"name": top.name(), "same_document": any(d == doc for d in app.documents())}
    # the mask template (template.py) was closed and deleted: no extra document, no file left
    res["documents_after"] = len(app.documents())
    res["template_files"] = sorted(p.name for p in Path(tempfile.gettempdir()).glob("dermis-*.kra"))
    # a closed case: its "source" is the new document's layer of what was read, checked by the test
    res["source_unchanged"] = None if source_before is None else bytes(source.pixelData(0, 0, w, h)) == source_before
    res["source_space"] = [source.colorModel(), source.colorDepth(), source.colorProfile()] if source else None
    for state in case.get("composites", ()):  # the image as Krita composites it, in several states
        if state == "opacity0":
            top.setOpacity(0)
        elif state == "normal_mode":
            top.setOpacity(255)
            top.setBlendingMode("normal")
        elif state in ("mask_zero", "mask_full"):  # what painting the whole mask black / white does
            mask = next(c for c in top.childNodes() if c.type() == "transparencymask")
            lx, ly, lw, lh = res["layers"][0]["rect"]
            mask.setPixelData(bytes([0 if state == "mask_zero" else 255]) * (lw * lh), lx, ly, lw, lh)
        doc.refreshProjection()
        doc.waitForDone()
        (out_dir / f"{name}.composite_{state}.raw").write_bytes(bytes(doc.pixelData(0, 0, w, h)))
    return res


def close_while_inserting(ctl, run, doc, after: int = 3, resumed: bool = False) -> dict:
    """Make the run's insertion close ``doc`` after its ``after``-th step (two variations: the first
    layer and its mask are filled, the second layer half made, all detached); returns a dict that
    counts the steps taken before and after. ``resumed``: when the insertion begins, the jobs' requests
    become what a run restored after a restart of Krita holds (resume.Resumed: no pixels)."""
    from dermis_krita import results, resume

    taken = {"before_close": 0, "after_close": 0}

    def closing():  # results.outcome's steps, as insert_some would run them (it takes these instead)
        if resumed:
            for job in run.jobs:
                job.request = resume.Resumed(job.id)
        if after == 0:
            doc.setModified(False)
            doc.close()
        steps = results.outcome(run)
        while True:
            try:
                next(steps)
            except StopIteration as end:
                return end.value
            if taken["before_close"] < after:
                taken["before_close"] += 1
                if taken["before_close"] == after:
                    doc.setModified(False)
                    doc.close()
            else:
                taken["after_close"] += 1
            yield

    run.inserting = closing()
    return taken


def closed_case(res: dict, out_dir: Path, name: str, ctl, run) -> tuple:
    """The new document a closed document's result went to: its facts, the layer of what was read
    (the whole canvas), and what the daemon returned for each job (R,G,B,A as it came)."""
    from krita import Krita

    new = ctl.last_placed[0].document if ctl.last_placed else None
    if new is None:
        raise RuntimeError(f"no new document: {ctl.last_error}")
    new.waitForDone()
    w, h = new.width(), new.height()
    res["new_document"] = {"open": any(d == new for d in Krita.instance().documents()), "size": [w, h],
                           "space": [new.colorModel(), new.colorDepth(), new.colorProfile()],
                           "resolution": new.resolution(), "name": new.name(), "file": new.fileName(),
                           "modified": new.modified(), "layers": names(new)}
    read = next((n for n in new.rootNode().childNodes() if n.name().endswith("(what Dermis read)")), None)
    if read is not None:
        (out_dir / f"{name}.read_layer.raw").write_bytes(bytes(read.pixelData(0, 0, w, h)))
    for k, job in enumerate(run.jobs):
        if job.result is not None:
            (out_dir / f"{name}.{k}.result.raw").write_bytes(job.result.pixels)
    return new, read, None


def _find_layer(top, name: str):
    """The paint layer called ``name``: ``top`` itself or a layer somewhere inside it."""
    if top.name() == name and top.type() == "paintlayer":
        return top
    for child in top.childNodes():
        found = _find_layer(child, name)
        if found is not None:
            return found
    return None


def names(doc) -> list:
    return [n.name() for n in doc.rootNode().childNodes()]


def tree(node) -> list:
    return [[c.name(), c.type(), c.visible(), tree(c)] for c in node.childNodes()]


def no_grpc(args: list) -> None:
    """The plugin installed without vendored wheels, in a Krita whose Python has no grpcio.

    Krita's official builds bundle a Python without grpcio; Debian's Krita uses the system Python,
    where a python3-grpcio package could be installed. So the system site folders are taken off the
    path first (PyQt5 and krita are already imported by then).
    """
    sys.path[:] = [p for p in sys.path if "-packages" not in p]
    for name in [m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "google.protobuf"))]:
        del sys.modules[name]
    out = Path(args[0])
    report: dict = {}
    try:
        try:
            import grpc  # noqa: F401

            report["grpc_importable"] = True
        except ImportError:
            report["grpc_importable"] = False
        import dermis_krita  # must import and register even so
        from dermis_krita import jobs
        from dermis_krita.thin_client import client as dc

        report["plugin_file"] = dermis_krita.__file__
        request = dc.JobRequest(pixels=b"\0" * 16, width=2, height=2, channels=4)
        job = jobs.Job(request, lambda: dc.Client()).start()
        job.wait(30)
        report["job"] = {"phase": job.phase.value, "error": job.error, "code": job.error_code}
        call = jobs.Call(lambda: dc.Client().info()).start()
        call.wait(30)
        report["info"] = {"error": call.error, "code": call.error_code}
    except Exception:
        report["crash"] = traceback.format_exc()
    out.write_text(json.dumps(report, indent=1))
    os._exit(0 if "crash" not in report else 2)
