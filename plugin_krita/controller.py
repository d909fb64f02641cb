"""The plugin's one controller: settings, server status and the current job, on Krita's UI thread.

Actions and the docker both talk to this object (one per Krita process, from ``instance()``), so
a job started from the menu shows in the docker and Cancel there stops it. A 40 ms QTimer runs
only while something is pending; each tick drains the worker threads' queues (``jobs``) and, when a
job is done, inserts the result through ``document``. Every failure ends up in ``last_error``,
shown by the docker; nothing here raises into Krita.
"""

from __future__ import annotations

import traceback
from typing import Any

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import document, options
from .jobs import Call, Job, Phase
from .thin_client import client as dc

POLL_MS = 40

class Controller(QObject):
    changed = pyqtSignal()  # anything the docker shows has changed
    download_plan_ready = pyqtSignal()  # ``download_plan`` arrived: the docker asks the user about it

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = options.Settings.from_json(document.read_setting("settings"))
        self.info: Any = None  # dc.ServerInfo once connected
        self.server_text = "Not connected yet"
        self.server_ok = False
        self.job: Job | None = None
        self.handled_job_id = ""  # the last finished job whose outcome is applied (layer inserted…)
        self._applying = ""
        self.last_error = ""
        self.last_message = ""
        self.padding = options.DEFAULT_PADDING
        self._info_call: Call | None = None
        self.download: Job | None = None  # a model download running in the daemon
        self.download_plan: Any = None  # dc.ModelPlan: what it would fetch, once asked
        self._plan_call: Call | None = None
        self._download_handled = ""  # the download whose end was reported
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._tick)

    # -- settings / server ----------------------------------------------------------------------
    def save_settings(self) -> None:
        document.write_setting("settings", self.settings.to_json())
        self.changed.emit()

    def connect_client(self) -> dc.Client:
        return dc.Client(self.settings.address or None)

    def refresh(self) -> None:
        """Ask the daemon for its status and presets (off the UI thread)."""
        if self._info_call is not None:
            return
        self.server_text = "Connecting…"

        def fetch() -> Any:
            with self.connect_client() as c:
                return c.info()

        self._info_call = Call(fetch).start()
        self._timer.start()
        self.changed.emit()

    def preset_info(self) -> Any:
        return options.find_preset(self.info, self.settings.preset)

    def controls(self) -> list[options.Control]:
        return options.controls_for(self.preset_info())

    @property
    def connecting(self) -> bool:
        return self._info_call is not None

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.finished

    # -- jobs -------------------------------------------------------------------------------------
    def refine(self, whole_image: bool = False) -> None:
        """Start a job on the active image; the menu actions and the docker's buttons call this."""
        try:
            self._refine(whole_image)
        except Exception as exc:  # a bug must not become Krita's exception dialog
            traceback.print_exc()
            self._error(f"Unexpected error ({type(exc).__name__}): {exc}")

    def _refine(self, whole_image: bool) -> None:
        if self.busy:
            self._error("A Dermis job is still running: wait for it or press Cancel.")
            return
        s = self.settings
        larger = s.scale != 1.0
        try:
            doc = document.active_document()
            src = document.read_source(doc, document.active_node(doc), whole_image=whole_image,
                                       padding=self.padding, full_canvas=larger)
        except document.DocumentError as e:
            self._error(str(e))
            return
        request = dc.JobRequest(
            pixels=src.pixels, width=src.width, height=src.height, channels=4,
            bit_depth=src.bit_depth, preset=s.preset, scale=s.scale, seed=s.seed,
            overrides=options.effective_overrides(s, self.controls()), mask=src.mask,
            output="full" if larger else "layer", client_name="krita",
        )
        self.job = Job(request, self.connect_client, context=src.target).start()
        self.handled_job_id = ""
        self.last_error = ""
        self.last_message = f"Refining the {src.target.description}"
        if src.notes:
            self.last_message += " (" + "; ".join(src.notes) + ")"
        self._timer.start()
        self.changed.emit()

    def cancel(self) -> None:
        if self.busy:
            self.job.cancel()
            self._timer.start()
            self.changed.emit()

    # -- model downloads (run in the daemon; only the waiting is here, on worker threads) -----------
    @property
    def downloading(self) -> bool:
        return self.download is not None and not self.download.finished

    def plan_download(self) -> None:
        """Ask the daemon what 'Download missing models…' would fetch; ``download_plan_ready`` follows."""
        if self.downloading or self._plan_call is not None:
            return
        preset = self.settings.preset

        def ask() -> Any:
            with self.connect_client() as c:
                return c.plan_models(preset)

        self._plan_call = Call(ask).start()
        self._timer.start()

    def start_download(self, accept_licences: bool) -> None:
        """Start the download the user confirmed (its licences included)."""
        if self.downloading:
            return
        self.download = Job.download(self.settings.preset, self.connect_client,
                                     accept_licences=accept_licences).start()
        self.last_error = ""
        self._timer.start()
        self.changed.emit()

    def cancel_download(self) -> None:
        if self.downloading:
            self.download.cancel()
            self._timer.start()
            self.changed.emit()

    # -- the UI-thread pump -------------------------------------------------------------------------
    def _tick(self) -> None:
        changed = False
        try:
            call = self._info_call
            if call is not None and call.poll():
                self._info_call = None
                self._got_info(call)
                changed = True
            plan = self._plan_call
            if plan is not None and plan.poll():
                self._plan_call = None
                if plan.error:
                    self._error(self._with_hint(plan.error, plan.error_code))
                else:
                    self.download_plan = plan.value
                    self.download_plan_ready.emit()
            download = self.download
            if download is not None and download.poll():
                changed = True
                if download.finished and download.id != self._download_handled:
                    self._download_handled = download.id
                    self._download_ended(download)
            job = self.job
            if job is not None and job.poll():
                changed = True
                if job.finished and job.id not in (self._applying, self.handled_job_id):
                    # guarded: Krita calls in _finish may run the event loop, and so this tick again
                    self._applying = job.id
                    try:
                        self._finish(job)
                    finally:
                        self._applying, self.handled_job_id = "", job.id
        except Exception as exc:
            traceback.print_exc()
            self._error(f"Unexpected error ({type(exc).__name__}): {exc}")
        if self._info_call is None and self._plan_call is None and not self.busy and not self.downloading:
            self._timer.stop()
        if changed:
            self.changed.emit()

    def _got_info(self, call: Call) -> None:
        if call.error:
            self.info, self.server_ok = None, False
            self.server_text = self._with_hint(call.error, call.error_code)
            return
        self.info, self.server_ok = call.value, True
        self.server_text = options.describe_server(self.info)

    def _finish(self, job: Job) -> None:
        if job.phase == Phase.done:
            insert = document.insert_result if job.request.output == "layer" else document.open_result_document
            try:
                placed = insert(job.context, job.result)
            except document.DocumentError as e:
                self._error(str(e))
                return
            took = (job.ended_at or 0) - job.started_at
            notes = placed.notes + list(getattr(job.result, "messages", []) or [])
            self.last_message = f"Added '{placed.name}' in {took:.1f} s" + "".join(f". {n}" for n in notes)
            document.notify(f"Dermis: {self.last_message}")
        elif job.phase == Phase.failed:
            self._error(self._with_hint(job.error, job.error_code))
        elif job.phase == Phase.cancelled:
            self.last_message = job.status_text or "Cancelled"
            document.notify(f"Dermis: {self.last_message}")

    def _download_ended(self, download: Job) -> None:
        if download.phase == Phase.done:
            notes = list(getattr(download.result, "messages", []) or [])
            self.last_message = "Models downloaded" + "".join(f". {n}" for n in notes)
            document.notify(f"Dermis: {self.last_message}")
        elif download.phase == Phase.failed:
            self._error(self._with_hint(download.error, download.error_code))
        else:
            self.last_message = "Download cancelled; the next download resumes it"
        self.refresh()  # the daemon now finds (some of) the files

    def _with_hint(self, text: str, code: str) -> str:
        hint = options.HINTS.get(code)
        return f"{text} {hint}" if hint and hint not in text else text

    def _error(self, text: str) -> None:
        self.last_error = text
        try:
            document.notify(f"Dermis: {text}", 8000)
        except Exception:
            traceback.print_exc()  # the docker still shows it
        self.changed.emit()

    def shutdown(self) -> None:
        """Krita is closing: stop the daemon working for a window that is going away."""
        self._timer.stop()
        if self.busy:
            self.job.cancel(wait=2.0)  # the one place that may block: Krita is exiting anyway
        # a download goes on in the daemon: it does not need this window


_instance: Controller | None = None


def shutdown() -> None:
    if _instance is not None:
        _instance.shutdown()


def instance() -> Controller:
    """The process-wide controller, created on first use (after Krita's QApplication exists)."""
    global _instance
    if _instance is None:
        _instance = Controller()
    return _instance
