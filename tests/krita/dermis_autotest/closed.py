"""GUI step for a document closed while its run works (issue 17): the result opens in a new,
unsaved document shown in a new view of Krita's window, and the message names both documents.
Run by driver.py after the detail-layer step; kritarunner (tests/krita/kr_core.py) checks the new
document's pixels, but has no window to show it in.
"""

from __future__ import annotations

from krita import Krita


def closed_in_window(drv, then) -> None:
    from .driver import open_document

    app, ctl, s = Krita.instance(), drv.ctl, drv.spec
    doc, bg = open_document("dermis-closed", s["width"], s["height"], "U8", "", s["image"], s["selection"])
    window = app.activeWindow()
    out: dict = {"views_before": [v.document().name() for v in window.views()]}
    ctl.settings.variations, ctl.settings.content = 1, "normal"
    ctl.settings.preset = s["preset"]  # lite-slow: still running when the image closes (lite-fast may be done)
    before = len(ctl.runs)
    ctl.refine_on(doc, bg)

    def queued() -> None:
        run = ctl.runs[-1]
        out["phases_at_close"] = [j.phase.value for j in run.jobs]
        doc.setModified(False)
        doc.close()  # the user closes the image (and so its view) while the daemon works
        drv.wait_for(lambda: run.handled, lambda: landed(run), 120, "the run of the closed document")

    def landed(run) -> None:
        new = ctl.last_placed[0].document if ctl.last_placed else None
        view = window.activeView()
        out.update(phases=[j.phase.value for j in run.jobs], message=ctl.last_message, error=ctl.last_error,
                   views_after=[v.document().name() for v in window.views()],
                   active_view=view.document().name() if view is not None else None)
        if new is not None:
            new.waitForDone()
            out.update(new_name=new.name(), new_file=new.fileName(), new_modified=new.modified(),
                       new_layers=[n.name() for n in new.rootNode().childNodes()])
            new.setModified(False)
            new.close()
        drv.step("closed", **out)
        drv.later(200, then)

    drv.wait_for(lambda: len(ctl.runs) > before or ctl.last_error, queued, 60, "the run to be queued")
