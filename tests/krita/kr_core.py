"""kritarunner driver: the Dermis plugin's core inside real Krita, against the real daemon.

Called as ``kritarunner -s kr_core -f main SPEC.json`` with the installed plugin (``dermis_krita``,
vendored client and wheels) on PYTHONPATH. For each case of the spec it builds a document, reads the
source through ``dermis_krita.document``, runs the job with the plugin's own ``jobs.Job`` and the
vendored thin client, inserts the result and dumps what happened (pixels sent, layer stack, the new
layer's pixels) for test_krita_editor.py to check against ``pipeline.run``. kritarunner has no event
loop, so the job is waited for synchronously here; the GUI test covers the non-blocking path.
kritarunner exits 0 whatever happens, so the result is a JSON file plus ``os._exit``.
"""

from __future__ import annotations

import json
import os
import sys
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
        from dermis_krita import document, jobs
        from dermis_krita.thin_client import client as dc
        from krita import Krita

        report["plugin_file"] = dermis_krita.__file__
        report["krita"] = Krita.instance().version()
        report["python"] = f"{sys.version_info[0]}.{sys.version_info[1]}"
        for case in spec["cases"]:
            try:
                report["cases"][case["name"]] = run_case(case, out_dir, document, jobs, dc)
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


def run_case(case: dict, out_dir: Path, document, jobs, dc) -> dict:
    from krita import Krita, Selection

    app = Krita.instance()
    name, w, h = case["name"], case["width"], case["height"]
    res: dict = {}
    doc = app.createDocument(w, h, name, case.get("model", "RGBA"), case["depth"], case.get("profile", ""), 72.0)
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
    source_before = bytes(source.pixelData(0, 0, w, h))
    res["layers_before"] = names(doc)
    if case.get("whole_image"):
        (out_dir / f"{name}.merged.raw").write_bytes(bytes(doc.pixelData(0, 0, w, h)))

    # 1. read, as the action does
    try:
        src = document.read_source(doc, source, whole_image=case.get("whole_image", False),
                                   padding=case.get("padding", 128))
    except document.DocumentError as e:
        res["read_error"] = str(e)
        res["layers_after"] = names(doc)
        return res
    t = src.target
    (out_dir / f"{name}.sent.raw").write_bytes(src.pixels)
    if src.mask is not None:
        (out_dir / f"{name}.sent_mask.raw").write_bytes(src.mask)
    res["sent"] = {"box": [t.x, t.y, t.width, t.height], "bit_depth": src.bit_depth, "wire": list(t.wire_space),
                   "mask": src.mask is not None, "notes": src.notes}

    # 2. the job, through the vendored client and the daemon the runtime file names
    scale = case.get("scale", 1.0)
    output = "layer" if scale == 1.0 else "full"  # as the controller decides
    request = dc.JobRequest(pixels=src.pixels, width=src.width, height=src.height, channels=4,
                            bit_depth=src.bit_depth, preset=case["preset"], scale=scale, seed=case["seed"],
                            overrides=case.get("overrides", {}), mask=src.mask, output=output,
                            client_name="krita-test")
    client_args = case.get("client", {})  # a wrong address or token, for the error cases
    job = jobs.Job(request, lambda: dc.Client(**client_args), context=t).start()
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
    t0 = time.monotonic()
    if not job.wait(120):
        res["job_error"] = "the job did not finish within 120 s"
        return res
    res["job"] = {"phase": job.phase.value, "error": job.error, "code": job.error_code,
                  "seconds": round(time.monotonic() - t0, 3), "messages": job.messages}
    if job.result is None:
        return res
    r = job.result
    res["result"] = {"layer_name": r.layer_name, "offset": [r.offset_x, r.offset_y], "size": [r.width, r.height],
                     "canvas": [r.canvas_width, r.canvas_height], "seed": r.seed, "bit_depth": r.bit_depth,
                     "channels": r.channels}

    # 3. insert, as the controller does when the job is done
    if output == "full":
        placed = document.open_result_document(t, r)
        new_doc = placed.document
        new_doc.waitForDone()
        res["new_document"] = {"open": document.is_open(new_doc), "size": [new_doc.width(), new_doc.height()],
                               "layers": names(new_doc), "space": [new_doc.colorModel(), new_doc.colorDepth(),
                                                                   new_doc.colorProfile()]}
        (out_dir / f"{name}.new_document.raw").write_bytes(bytes(new_doc.pixelData(0, 0, r.width, r.height)))
        res["layers_after"] = names(doc)
        res["source_unchanged"] = bytes(source.pixelData(0, 0, w, h)) == source_before
        return res
    try:
        placed = document.insert_result(t, r)
    except document.DocumentError as e:
        res["insert_error"] = str(e)
        return res
    doc.waitForDone()
    layer_name = placed.name
    res["inserted"] = {"name": layer_name, "notes": placed.notes, "same_document": placed.document == doc}
    res["layers_after"] = names(doc)
    new = next(n for n in doc.rootNode().childNodes() if n.name() == layer_name)
    res["new_space"] = [new.colorModel(), new.colorDepth(), new.colorProfile()]
    res["doc_space"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    x, y = t.x + r.offset_x, t.y + r.offset_y
    res["layer_rect"] = [x, y, r.width, r.height]
    (out_dir / f"{name}.layer.raw").write_bytes(bytes(new.pixelData(x, y, r.width, r.height)))
    (out_dir / f"{name}.source_after.raw").write_bytes(bytes(source.pixelData(x, y, r.width, r.height)))
    res["source_unchanged"] = bytes(source.pixelData(0, 0, w, h)) == source_before
    res["source_space"] = [source.colorModel(), source.colorDepth(), source.colorProfile()]
    return res


def names(doc) -> list:
    return [n.name() for n in doc.rootNode().childNodes()]


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
