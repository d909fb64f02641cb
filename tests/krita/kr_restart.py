"""kritarunner driver: Krita closed mid-run, then opened again (two kritarunner processes, one profile).

``first``: saves an image as .kra, starts a run with the plugin's controller on a slow preset, waits
until the daemon works on it, then does what Krita does when it closes (``controller.shutdown``) and
dies. ``second``: a new Krita opens the .kra again; the plugin asks the daemon for its jobs
(``ListJobs``, under the client id it kept) and inserts the result, once; a third look (another
controller, as after one more restart) finds nothing left to insert. Reports are JSON files.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path


def _wait(ctl, cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        ctl._tick()  # kritarunner has no event loop: run the controller's timer function by hand
        time.sleep(0.01)
    return True


def _names(doc) -> list:
    return [n.name() for n in doc.rootNode().childNodes()]


def _finish(out: Path, report: dict) -> None:
    out.write_text(json.dumps(report, indent=1, default=str))
    os._exit(0 if "crash" not in report else 2)


def first(args: list) -> None:
    spec = json.loads(Path(args[0]).read_text())
    report: dict = {}
    try:
        from dermis_krita import controller, resume
        from krita import Krita, Selection

        app = Krita.instance()
        w, h = spec["width"], spec["height"]
        doc = app.createDocument(w, h, "restart", "RGBA", "U8", "", 72.0)
        bg = doc.rootNode().childNodes()[0]
        bg.setName("Background")
        bg.setPixelData(Path(spec["image"]).read_bytes(), 0, 0, w, h)
        sel = Selection()
        sel.select(*spec["selection"], 255)
        doc.setSelection(sel)
        doc.waitForDone()
        report["saved"] = doc.saveAs(spec["kra"])
        doc.waitForDone()
        ctl = controller.instance()
        ctl.refresh()
        if not _wait(ctl, lambda: not ctl.connecting, 60) or not ctl.server_ok:
            raise RuntimeError(f"no daemon: {ctl.server_text}")
        s = ctl.settings
        s.preset, s.seed, s.scale, s.variations, s.overrides = spec["preset"], 7, 1.0, 1, {}
        ctl.refine_on(doc, bg)
        _wait(ctl, lambda: ctl.runs or not ctl._preparing, 60)  # the byte work runs on a worker first
        run = ctl.runs[-1]
        job = run.jobs[0]
        ok = _wait(ctl, lambda: job.phase.value == "running" and job.fraction > 0, 60)
        report.update(started=ok, remembered=run.remembered, job_id=job.id, client_id=ctl.client_id,
                      pending=resume.pending(), fraction=job.fraction)
        ctl.shutdown()  # what Krita's applicationClosing runs
        report.update(phase_at_exit=job.phase.value, cancel_requested=job.cancel_requested)
    except Exception:
        report["crash"] = traceback.format_exc()
    _finish(Path(spec["out"]) / "first.json", report)


def second(args: list) -> None:
    spec = json.loads(Path(args[0]).read_text())
    report: dict = {}
    try:
        from dermis_krita import controller, resume
        from krita import Krita

        app = Krita.instance()
        report["pending_before"] = len(resume.pending())
        doc = app.openDocument(spec["kra"])
        doc.waitForDone()
        report["layers_opened"] = _names(doc)
        ctl = controller.instance()
        report["client_id"] = ctl.client_id
        ctl.refresh()
        ok = _wait(ctl, lambda: ctl.last_run is not None, 120)
        report.update(resumed=ok, message=ctl.last_message, error=ctl.last_error)
        if ok:
            run = ctl.last_run
            report["run"] = {"title": run.title, "phases": [j.phase.value for j in run.jobs],
                             "ids": [j.id for j in run.jobs]}
        doc.waitForDone()
        report["layers_after"] = _names(doc)
        report["pending_after"] = len(resume.pending())
        # one more restart: a new controller asks again, and nothing is inserted twice
        again = controller.Controller()
        again.refresh()
        _wait(again, lambda: not again.connecting, 30)
        _wait(again, lambda: False, 2.0)
        report["runs_again"] = len(again.runs)
        doc.waitForDone()
        report["layers_again"] = _names(doc)
        w, h = spec["width"], spec["height"]
        top = next((n for n in doc.rootNode().childNodes() if n.name().startswith("Dermis (")), None)
        if top is not None:
            x, y, sw, sh = spec["selection"]
            result = top if top.type() == "paintlayer" else None  # the result, its mask its child
            report["top_children"] = [[c.name(), c.type()] for c in top.childNodes()]
            m = 16  # inside the feathered edge, the composite is the result
            doc.refreshProjection()
            if result is not None:
                area = (x + m, y + m, sw - 2 * m, sh - 2 * m)
                got, want = bytes(doc.pixelData(*area)), bytes(result.pixelData(*area))
                report["inside_max_diff"] = max(abs(a - b) for a, b in zip(got, want, strict=True))
        report["size"] = [w, h]
        doc.setModified(False)
    except Exception:
        report["crash"] = traceback.format_exc()
    _finish(Path(spec["out"]) / "second.json", report)
