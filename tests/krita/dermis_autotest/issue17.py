"""GUI step for issue 17, run by driver.py after the variations run and its Undo: the detail layer
(Grain Merge) is one undo step. One Undo removes it (with its mask) and leaves the history's top as
it was before the run. Negative control: ``setBlendingMode`` on a detached node of the image does add
a step (what Dermis avoids through its template), seen by the same measurement.
"""

from __future__ import annotations

from krita import Krita


def detail_undo(drv, then) -> None:
    app = Krita.instance()
    undo, redo = app.action("edit_undo"), app.action("edit_redo")
    out: dict = {"undo_before": undo.text(), "layers_before": drv.layer_names()}
    ctl = drv.ctl
    ctl.settings.variations, ctl.settings.content = 1, "detail"
    ctl.settings.preset = drv.spec["big"]["preset"] if drv.spec.get("big") else drv.spec["preset"]
    before = len(ctl.runs)
    drv.action.trigger()

    def queued() -> None:
        run = ctl.runs[-1]
        drv.wait_for(lambda: run.handled, lambda: landed(run), 120, "the detail run")

    def landed(run) -> None:
        drv.doc.waitForDone()
        top = next((n for n in drv.doc.rootNode().childNodes() if n.name().startswith("Dermis detail")), None)
        out.update(phases=[j.phase.value for j in run.jobs], layers=drv.layer_names(), error=ctl.last_error,
                   top=[top.type(), top.blendingMode(), [c.type() for c in top.childNodes()]] if top else None,
                   undo_after_insert=undo.text())
        undo.trigger()
        drv.later(300, undone)

    def undone() -> None:
        drv.doc.waitForDone()
        out.update(layers_after_undo=drv.layer_names(), undo_after_undo=undo.text(), redo_after_undo=redo.text())
        # negative control: the blend-mode call Dermis avoids, on a detached node of this image
        node = drv.doc.createNode("control", "paintlayer")
        node.setBlendingMode("grain_merge")
        drv.later(200, control)

    def control() -> None:
        out["control_undo"] = undo.text()
        undo.trigger()  # takes the control's step back off the history
        ctl.settings.content = "normal"
        drv.step("detail", **out)
        drv.later(200, then)

    drv.wait_for(lambda: len(ctl.runs) > before or ctl.last_error, queued, 30, "the detail run to be queued")
