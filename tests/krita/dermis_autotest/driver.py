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

from . import closed, issue17, rows

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
        self.plugin_gap = 0.0  # the same, while the plugin reads, prepares or inserts pixels
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
            state = self.state()
            if now - self.last_beat > 0.25:  # what was going on, for a person reading a failure
                self.out.setdefault("long_gaps", []).append([round(now - self.last_beat, 3), state])
            if any(w in state for w in ("preparing", "layers", "inserting")):  # Dermis's own pixel work
                self.plugin_gap = max(self.plugin_gap, now - self.last_beat)
        self.last_beat = now
        self.ticks += 1

    def state(self) -> str:
        ctl = getattr(self, "ctl", None)
        if ctl is None:
            return "setup"
        parts = [f"preparing {'reading' if e[0] is None else 'worker'}" for e in ctl._preparing]
        for run in ctl.runs:
            parts.append(f"run {run.number}: " + ",".join(j.phase.value for j in run.jobs)
                         + (" layers" if run.layers_call is not None else "")
                         + (" inserting" if run.inserting is not None else ""))
        return "; ".join(parts) or "idle"

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
                            f"jobs: {[(j.phase.value, j.status_text) for _, j in self.ctl.active_jobs()]}")
            else:
                self.later(20, check)

        self.later(0, check)

    def step(self, name: str, **data) -> None:
        self.out["steps"].append(name)
        self.out[name] = data

    # -- the test -------------------------------------------------------------------------------
    def start(self) -> None:
        self.later(int(self.spec.get("hard_timeout_s", 150) * 1000), lambda: self.finish("hard timeout"))
        self.later(300, self.setup if not self.spec.get("only_big") else self.only_big)

    def only_big(self) -> None:
        """bench/bench_krita_ui.py: the 4096x4096 run alone."""
        import dermis_krita.controller as controller_mod

        self.ctl = controller_mod.instance()
        self.ctl.settings.scale, self.ctl.settings.seed, self.ctl.settings.overrides = 1.0, self.spec["seed"], {}
        self.heart.start()
        self.ctl.refresh()
        self.wait_for(lambda: self.ctl.server_ok and not self.ctl.connecting, self.big, 30, "the daemon's info")

    def setup(self) -> None:
        import dermis_krita.controller as controller_mod

        s, app = self.spec, Krita.instance()
        self.doc, self.bg = open_document("dermis-autotest", s["width"], s["height"], "U8", "", s["image"],
                                          s["selection"])
        self.ctl = controller_mod.instance()
        self.ctl.settings.preset = s["preset"]
        self.ctl.settings.scale = 1.0
        self.ctl.settings.seed = s["seed"]
        self.ctl.settings.variations = 1
        self.ctl.settings.overrides = {}
        self.docker = next((d for d in app.dockers() if d.objectName() == "dermis_docker"), None)
        self.action = find_menu_action(app.activeWindow().qwindow().menuBar(),
                                       ["tools", "scripts", "dermis_menu"], "Refine skin")
        self.step("setup", docker=self.docker is not None, menu_action=self.action is not None,
                  layers=self.layer_names())
        if self.docker is None or self.action is None:
            return self.finish("the Dermis docker or its menu entry is missing")
        self.ctl.refresh()
        self.wait_for(lambda: self.ctl.server_ok and not self.ctl.connecting, self.connected, 30, "the daemon's info")

    def connected(self) -> None:
        # the docker builds its controls from the daemon's preset info: look at the default one's
        self.ctl.settings.preset = ""
        self.docker.refresh_view()
        default_controls = sorted(self.docker._stage_widgets)
        self.ctl.settings.preset = self.spec["preset"]
        self.docker.refresh_view()
        w = self.docker._stage_widgets
        self.step("connected", server_text=self.docker.server.text(), missing=self.docker.missing.text(),
                  presets=[p.name for p in self.ctl.info.presets], default_controls=default_controls,
                  preset_shown=self.docker.preset.currentData(),
                  feather=w["feather"].value() if "feather" in w else None,
                  context=w["context"].value() if "context" in w else None)
        self.heart.start()
        self.later(100, self.queue_and_cancel)

    def queue_and_cancel(self) -> None:
        """Three presses while the first works: three runs queued, none refused; Cancel on one job's
        row, then a preview, then Cancel all; nothing is inserted and the preview goes away."""
        t0 = time.monotonic()
        for _ in range(3):
            self.action.trigger()  # Tools → Scripts → Dermis → Refine skin, three times
        trigger_s = time.monotonic() - t0
        # each press reads the pixels; a worker prepares them, then the run is queued
        self.wait_for(lambda: len(self.ctl.runs) == 3 or self.ctl.last_error, lambda: self.queued(trigger_s), 30,
                      "three runs")

    def queued(self, trigger_s: float) -> None:
        runs = list(self.ctl.runs)
        if len(runs) != 3:
            return self.finish(f"{len(runs)} runs after three presses; docker error: {self.ctl.last_error!r}")
        self.docker.refresh_view()
        rows = dict(self.docker._job_rows)
        queued = {"runs": len(runs), "rows": len(rows), "row_texts": [lb.text() for lb, _ in rows.values()],
                  "stage_text": self.docker.stage_text.text(), "queue_error": self.ctl.last_error}
        second = runs[1].jobs[0]
        rows[second.id][1].click()  # this job's own Cancel button

        def one_cancelled() -> None:
            queued["second_phase"] = second.phase.value
            queued["first_phase_then"] = runs[0].jobs[0].phase.value
            queued["rows_after_one_cancel"] = len(self.docker._job_rows)
            self.wait_for(lambda: self.ctl.preview is not None and self.docker.preview.pixmap() is not None
                          and not self.docker.preview.pixmap().isNull(), preview_seen, 60, "a preview")

        def preview_seen() -> None:
            p, pix = self.ctl.preview, self.docker.preview.pixmap()
            queued["preview"] = {"size": [p.width, p.height], "area": list(p.area) if p.area else None,
                                 "stage": p.stage, "thumb": [pix.width(), pix.height()],
                                 "text": self.docker.preview_text.text()}
            queued["fraction_at_cancel"] = runs[0].fraction
            self.cancel_at = time.monotonic()
            self.docker.cancel_button.click()  # Cancel all
            self.wait_for(lambda: all(r.handled for r in runs), all_cancelled, 30, "the cancelled runs to end")

        def all_cancelled() -> None:
            self.docker.refresh_view()
            pix = self.docker.preview.pixmap()
            self.step("queue", trigger_s=trigger_s, **queued,
                      phases=[j.phase.value for r in runs for j in r.jobs],
                      cancel_latency_s=time.monotonic() - self.cancel_at, layers=self.layer_names(),
                      preview_after=self.ctl.preview is not None, thumb_after=pix is not None and not pix.isNull(),
                      rows_after=len(self.docker._job_rows), message=self.ctl.last_message, error=self.ctl.last_error,
                      cancel_enabled_after=self.docker.cancel_button.isEnabled())
            self.later(200, self.run_to_the_end)

        self.wait_for(lambda: second.phase.value == "cancelled", one_cancelled, 30, "the second run's job to cancel")

    def run_to_the_end(self) -> None:
        """Two variations: a group of two layers named by seed, only the first visible; one undo."""
        self.ctl.settings.variations = 2
        self.undo_before = Krita.instance().action("edit_undo").text()  # the history's top before the run
        ticks0, t0 = self.ticks, time.monotonic()
        self.max_gap, self.last_beat = 0.0, t0
        self.action.trigger()
        trigger_s = time.monotonic() - t0
        self.wait_for(lambda: self.ctl.runs or self.ctl.last_error, lambda: self.follow(t0, ticks0, trigger_s), 30,
                      "the run to be queued")

    def follow(self, t0: float, ticks0: int, trigger_s: float) -> None:
        run = self.ctl.runs[-1]
        texts = []

        def watch() -> bool:
            self.docker.refresh_view()
            text = " | ".join(lb.text() for lb, _ in self.docker._job_rows.values())
            if text and (not texts or texts[-1] != text):
                texts.append(text)
            return run.handled

        def done() -> None:
            took = time.monotonic() - t0
            self.doc.waitForDone()
            names = self.layer_names()
            top = next((n for n in self.doc.rootNode().childNodes() if n.name().startswith("Dermis (")), None)
            data = {}
            if top is not None:
                data["children"] = [[c.name(), c.type(), c.visible()] for c in reversed(top.childNodes())]
                first = next((c for c in top.childNodes() if c.visible()), None)
                if first is not None:
                    data["first"] = [first.name(), first.type()]
                    data["first_children"] = [[c.name(), c.type()] for c in first.childNodes()]
                x, y, w, h = self.spec["selection"]
                result = first if first is not None and first.type() == "paintlayer" else None
                m = 16  # inside the feathered edge, the composite is the first seed's result
                self.doc.refreshProjection()
                self.doc.waitForDone()
                if result is not None:
                    area = (x + m, y + m, w - 2 * m, h - 2 * m)
                    got, want = bytes(self.doc.pixelData(*area)), bytes(result.pixelData(*area))
                    data["inside_max_diff"] = max(abs(a - b) for a, b in zip(got, want, strict=True))
                    data["inside_background_diff"] = max(abs(a - b) for a, b in zip(got, bytes(self.bg.pixelData(*area)), strict=True))
                data["composite_same_outside"] = (bytes(self.doc.pixelData(2, 2, 1, 1))
                                                  == bytes(self.bg.pixelData(2, 2, 1, 1)))
            pix = self.docker.preview.pixmap()
            self.step("run", trigger_s=trigger_s, phases=[j.phase.value for j in run.jobs], seconds=took,
                      ticks=self.ticks - ticks0, max_gap_s=self.max_gap, layers=names,
                      top=top.name() if top else None, progress_texts=texts[:50], message=self.ctl.last_message,
                      error=self.ctl.last_error, docker_progress=self.docker.progress.value(),
                      preview_after=self.ctl.preview is not None, thumb_after=pix is not None and not pix.isNull(),
                      **data)
            if self.spec.get("screenshot"):  # for docs/krita.md, and for a person looking into a failure
                Krita.instance().activeWindow().qwindow().grab().save(self.spec["screenshot"])
            self.later(200, self.undo)

        self.wait_for(watch, done, 120, "the run to finish")

    def undo(self) -> None:
        app = Krita.instance()
        undo = app.action("edit_undo")
        text = undo.text()
        undo.trigger()
        self.doc.waitForDone()

        def check() -> None:
            self.step("undo", action_text=text, layers=self.layer_names(), before=self.undo_before,
                      after=undo.text(), source_unchanged=self.source_unchanged(),
                      redo_text=app.action("edit_redo").text())
            self.later(100, lambda: issue17.detail_undo(
                self, lambda: closed.closed_in_window(self, self.after_issue17)))

        self.later(300, check)

    def after_issue17(self) -> None:
        self.later(100, self.big) if self.spec.get("big") else self.finish(None)

    def big(self) -> None:
        """A 4096x4096 16-bit document: reading, sending and inserting it must leave the UI ticking."""
        b, n = self.spec["big"], self.spec["big"]["size"]
        doc, bg = open_document("dermis-big", n, n, "U16", b["profile"], b["image"], b["selection"])
        self.big_doc = doc
        self.ctl.settings.variations = 1
        self.ctl.settings.preset = b["preset"]

        import dermis_krita.uitime as uitime

        def go() -> None:
            uitime.reset()  # the plugin's own UI-thread steps, timed inside it, from here
            self.out["long_gaps"] = []  # those while the document was built do not count
            self.max_gap, self.plugin_gap, self.last_beat = 0.0, 0.0, time.monotonic()
            ticks0, t0 = self.ticks, time.monotonic()
            self.ctl.refine_on(doc, bg)
            trigger_s = time.monotonic() - t0
            self.wait_for(lambda: self.ctl.runs or self.ctl.last_error, lambda: queued(t0, ticks0, trigger_s), 120,
                          "the big run to be queued")

        def queued(t0: float, ticks0: int, trigger_s: float) -> None:
            run = self.ctl.runs[-1] if self.ctl.runs else None
            if run is None:
                return self.finish(f"the big run did not start: {self.ctl.last_error!r}")

            def landed() -> None:
                doc.waitForDone()
                self.step("big", trigger_s=trigger_s, seconds=time.monotonic() - t0, ticks=self.ticks - ticks0,
                          max_gap_s=self.max_gap, plugin_gap_s=self.plugin_gap,
                          gaps=self.out.get("long_gaps", [])[-60:], phases=[j.phase.value for j in run.jobs],
                          layers=[c.name() for c in doc.rootNode().childNodes()], error=self.ctl.last_error,
                          space=[doc.colorModel(), doc.colorDepth(), doc.colorProfile()],
                          ui_steps=uitime.report(),
                          rows=rows.dump_rows(b, doc, bg, run))
                self.finish(None)

            self.wait_for(lambda: run.handled, landed, b.get("timeout_s", 240), "the 4096x4096 run")

        self.later(500, go)  # let Krita settle after building the document, then measure from here

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
            for doc in (getattr(self, "doc", None), getattr(self, "big_doc", None)):
                if doc is not None:
                    doc.setModified(False)
                    doc.close()
            Krita.instance().action("file_quit").trigger()
        finally:
            QTimer.singleShot(5000, lambda: os._exit(code))  # file_quit would exit 0 regardless


def open_document(name: str, w: int, h: int, depth: str, profile: str, image: str, selection: list):
    """A new RGBA document in a view, its layer filled from a raw file, a rectangle selected."""
    app = Krita.instance()
    doc = app.createDocument(w, h, name, "RGBA", depth, profile, 72.0)
    bg = doc.rootNode().childNodes()[0]
    with open(image, "rb") as f:
        bg.setPixelData(f.read(), 0, 0, w, h)
    app.activeWindow().addView(doc)
    doc.setActiveNode(bg)
    sel = Selection()
    sel.select(*selection, 255)
    doc.setSelection(sel)
    doc.waitForDone()
    return doc, bg


def find_menu_action(bar, path, text):
    """The QAction a user clicks, found by walking the menu bar (objectNames, then the entry's text)."""
    actions = bar.actions()
    for name in path:
        menu = next((a.menu() for a in actions if a.objectName().lower() == name and a.menu()), None)
        if menu is None:
            return None
        actions = menu.actions()
    return next((a for a in actions if a.text().replace("&", "") == text), None)
