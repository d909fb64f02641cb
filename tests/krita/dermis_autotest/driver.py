"""Drive Dermis in Krita's GUI: menu action → Cancel → menu action again → check the layer → undo.

Runs on Krita's UI thread as a chain of QTimer steps, so Krita's event loop (and Dermis's own
timers) keep running between them. A 20 ms heartbeat timer counts ticks: if anything blocked the
UI thread while a job ran, the count shows it. Results go to the JSON file the spec names, then
Krita quits; Krita exits 0 even when Python fails, so the test reads the JSON and the exit code
set here with os._exit.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QTimer

_driver = None


def install() -> None:
    global _driver
    with open(os.environ["DERMIS_AUTOTEST_SPEC"], encoding="utf-8") as f:
        spec = json.load(f)
    _driver = Driver(spec)
    Krita.instance().notifier().windowCreated.connect(_driver.start)


class Driver:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.out: dict = {"steps": [], "exceptions": []}
        self.finished = False
        self.ticks = 0
        self.last_beat = None
        self.max_gap = 0.0  # longest time between two heartbeats: how long the UI thread was busy
        self.heart = QTimer()
        self.heart.setInterval(20)
        self.heart.timeout.connect(self._beat)
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook  # an exception reaching Qt would be Krita's error dialog

    # -- plumbing -------------------------------------------------------------------------------
    def _beat(self) -> None:
        now = time.monotonic()
        if self.last_beat is not None:
            self.max_gap = max(self.max_gap, now - self.last_beat)
        self.last_beat = now
        self.ticks += 1

    def _excepthook(self, etype, value, tb) -> None:
        self.out["exceptions"].append("".join(traceback.format_exception(etype, value, tb)))

    def later(self, ms: int, fn) -> None:
        def run() -> None:
            if self.finished:
                return
            try:
                fn()
            except Exception:
                self.finish(traceback.format_exc())

        QTimer.singleShot(ms, run)

    def wait_for(self, cond, then, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s

        def check() -> None:
            if cond():
                then()
            elif time.monotonic() > deadline:
                self.finish(f"timed out waiting for {what}; docker error: {self.ctl.last_error!r}, "
                            f"job: {self.ctl.job.phase if self.ctl.job else None}")
            else:
                self.later(20, check)

        self.later(0, check)

    def step(self, name: str, **data) -> None:
        self.out["steps"].append(name)
        self.out[name] = data

    # -- the test -------------------------------------------------------------------------------
    def start(self) -> None:
        self.later(int(self.spec.get("hard_timeout_s", 150) * 1000), lambda: self.finish("hard timeout"))
        self.later(300, self.setup)

    def setup(self) -> None:
        import dermis_krita.controller as controller_mod

        s, app = self.spec, Krita.instance()
        with open(s["image"], "rb") as f:
            raw = f.read()
        doc = app.createDocument(s["width"], s["height"], "dermis-autotest", "RGBA", "U8", "", 72.0)
        bg = doc.rootNode().childNodes()[0]
        bg.setPixelData(raw, 0, 0, s["width"], s["height"])
        app.activeWindow().addView(doc)
        doc.setActiveNode(bg)
        sel = Selection()
        sel.select(*s["selection"], 255)
        doc.setSelection(sel)
        doc.waitForDone()
        self.doc, self.bg = doc, bg
        self.ctl = controller_mod.instance()
        self.ctl.settings.preset = s["preset"]
        self.ctl.settings.scale = 1.0
        self.ctl.settings.seed = s["seed"]
        self.ctl.settings.overrides = {}
        self.docker = next((d for d in app.dockers() if d.objectName() == "dermis_docker"), None)
        self.action = find_menu_action(app.activeWindow().qwindow().menuBar(),
                                       ["tools", "scripts", "dermis_menu"], "Refine skin")
        self.step("setup", docker=self.docker is not None, menu_action=self.action is not None,
                  layers=self.layer_names())
        if self.docker is None or self.action is None:
            return self.finish("the Dermis docker or its menu entry is missing")
        self.ctl.refresh()
        self.wait_for(lambda: self.ctl.server_ok and not self.ctl.connecting, self.run_and_cancel, 30, "the daemon's info")

    def run_and_cancel(self) -> None:
        # the docker builds its stage controls from the daemon's presets: look at the default one's
        self.ctl.settings.preset = ""
        self.docker.refresh_view()
        default_controls = sorted(self.docker._stage_widgets)
        self.ctl.settings.preset = self.spec["preset"]
        self.docker.refresh_view()
        self.step("connected", server_text=self.docker.server.text(), missing=self.docker.missing.text(),
                  presets=[p.name for p in self.ctl.info.presets], default_controls=default_controls,
                  preset_shown=self.docker.preset.currentData())
        self.heart.start()
        t0 = time.monotonic()
        self.action.trigger()  # the menu entry a user clicks: Tools → Scripts → Dermis → Refine skin
        trigger_s = time.monotonic() - t0
        job = self.ctl.job

        def cancel() -> None:
            self.cancel_at = time.monotonic()
            self.cancel_fraction = job.fraction
            self.docker.cancel_button.click()
            self.wait_for(lambda: self.ctl.handled_job_id == job.id, lambda: cancelled(), 30,
                          "the cancelled job to end")

        def cancelled() -> None:
            self.step("cancel", trigger_s=trigger_s, phase=job.phase.value, fraction=self.cancel_fraction,
                      cancel_latency_s=time.monotonic() - self.cancel_at, layers=self.layer_names(),
                      message=self.ctl.last_message, error=self.ctl.last_error,
                      cancel_enabled_after=self.docker.cancel_button.isEnabled())
            self.later(200, self.run_to_the_end)

        if job is None:
            return self.finish(f"no job started; docker error: {self.ctl.last_error!r}")
        self.wait_for(lambda: job.phase.value == "running" and job.fraction > 0, cancel, 60,
                      "the first job to make progress")

    def run_to_the_end(self) -> None:
        ticks0, t0 = self.ticks, time.monotonic()
        self.max_gap, self.last_beat = 0.0, t0
        self.action.trigger()
        trigger_s = time.monotonic() - t0
        job = self.ctl.job
        texts = []

        def watch() -> bool:
            text = self.docker.stage_text.text()
            if text and (not texts or texts[-1] != text):
                texts.append(text)
            return self.ctl.handled_job_id == job.id  # finished, and the result handled

        def done() -> None:
            took = time.monotonic() - t0
            self.doc.waitForDone()
            names = self.layer_names()
            new = next((n for n in self.doc.rootNode().childNodes() if n.name().startswith("Dermis (")), None)
            data = {}
            if new is not None:
                b = new.bounds()
                data = {"bounds": [b.x(), b.y(), b.width(), b.height()],
                        "space": [new.colorModel(), new.colorDepth(), new.colorProfile()]}
                x, y, w, h = self.spec["selection"]
                data["alpha_center"] = bytes(new.pixelData(x + w // 2, y + h // 2, 1, 1))[3]
                data["alpha_far"] = bytes(new.pixelData(0, 0, 1, 1))[3]
            self.step("run", trigger_s=trigger_s, phase=job.phase.value, seconds=took,
                      ticks=self.ticks - ticks0, max_gap_s=self.max_gap, layers=names, new_layer=new.name() if new else None,
                      progress_texts=texts[:50], message=self.ctl.last_message, error=self.ctl.last_error,
                      docker_progress=self.docker.progress.value(), **data)
            if self.spec.get("screenshot"):  # for a person looking into a failure
                Krita.instance().activeWindow().qwindow().grab().save(self.spec["screenshot"])
            self.later(200, self.undo)

        self.wait_for(watch, done, 90, "the second job to finish")

    def undo(self) -> None:
        app = Krita.instance()
        undo = app.action("edit_undo")
        text = undo.text()
        undo.trigger()
        self.doc.waitForDone()

        def check() -> None:
            self.step("undo", action_text=text, layers=self.layer_names(),
                      source_unchanged=self.source_unchanged())
            self.finish(None)

        self.later(300, check)

    # -- helpers --------------------------------------------------------------------------------
    def layer_names(self) -> list:
        return [n.name() for n in self.doc.rootNode().childNodes()]

    def source_unchanged(self) -> bool:
        s = self.spec
        with open(s["image"], "rb") as f:
            return bytes(self.bg.pixelData(0, 0, s["width"], s["height"])) == f.read()

    def finish(self, error) -> None:
        if self.finished:
            return
        self.finished = True
        self.heart.stop()
        self.out["error"] = error
        self.out["docker_error"] = getattr(getattr(self, "ctl", None), "last_error", None)
        with open(self.spec["out"] + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.out, f, indent=1, default=str)
        os.replace(self.spec["out"] + ".tmp", self.spec["out"])
        code = 0 if error is None and not self.out["exceptions"] else 3
        if code:
            os._exit(code)  # Krita's file_quit would exit 0
        try:
            doc = getattr(self, "doc", None)
            if doc is not None:
                doc.setModified(False)
                doc.close()
            Krita.instance().action("file_quit").trigger()
        finally:
            QTimer.singleShot(5000, lambda: os._exit(code))  # file_quit would exit 0 regardless


def find_menu_action(bar, path, text):
    """The QAction a user clicks, found by walking the menu bar (objectNames, then the entry's text)."""
    actions = bar.actions()
    for name in path:
        menu = next((a.menu() for a in actions if a.objectName().lower() == name and a.menu()), None)
        if menu is None:
            return None
        actions = menu.actions()
    return next((a for a in actions if a.text().replace("&", "") == text), None)
