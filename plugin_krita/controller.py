"""The plugin's one controller: settings, server status and the queued runs, on Krita's UI thread.

Actions and the docker both talk to this object (one per Krita process, from ``instance()``), so a
run started from the menu shows in the docker and Cancel there stops it. Pressing *Refine skin*
while runs are working queues another run (``runs.Run``: one job per part of the selection and per
seed). A 40 ms QTimer runs only while something is pending; each tick drains the worker threads'
queues (``jobs``), starts waiting jobs (``runs.Scheduler``) and, when a run has ended, inserts its
results through ``layers``. Every failure ends up in ``last_error``, shown by the docker; nothing
here raises into Krita.
"""

from __future__ import annotations

import traceback
from typing import Any

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import document, layers, options, prepare, results, resume, uitime
from .jobs import Call, Job, Phase
from .runs import Ask, Piece, Run, Scheduler
from .thin_client import client as dc
from .thin_client import editors

POLL_MS = 40
EDITOR = "krita"


class Controller(QObject):
    changed = pyqtSignal()  # anything the docker shows has changed
    download_plan_ready = pyqtSignal()  # ``download_plan`` arrived: the docker asks the user about it

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = options.Settings.from_json(document.read_setting("settings"))
        self.info: Any = None  # dc.ServerInfo once connected
        self.server_text = "Not connected yet"
        self.server_ok = False
        self.runs: list[Run] = []  # queued, running, and ended runs not yet applied
        self.run_count = 0
        self.last_run: Run | None = None  # the latest run whose results were applied
        self.last_placed: list[layers.Placed] = []  # where its results went
        self.preview: Any = None  # dc.Preview: the latest look at the work in progress
        self.preview_label = ""
        self._applying = False
        self.last_error = ""
        self.last_message = ""
        self._info_call: Call | None = None
        self._preparing: list[list[Any]] = []  # [Call or None while reading, Source, Ask]
        self.download: Job | None = None  # a model download running in the daemon
        self.download_plan: Any = None  # dc.ModelPlan: what it would fetch, once asked
        self._plan_call: Call | None = None
        self._download_handled = ""  # the download whose end was reported
        self.scheduler = Scheduler()
        self.client_id = resume.client_id()  # the daemon shows this plugin its own jobs (ListJobs)
        self._resume_call: Call | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._tick)

    # -- settings / server ----------------------------------------------------------------------
    def save_settings(self) -> None:
        document.write_setting("settings", self.settings.to_json())
        self.changed.emit()

    def connect_client(self) -> dc.Client:
        return dc.Client(self.settings.address or None, client_id=self.client_id)

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
        return bool(self._preparing) or any(not r.finished for r in self.runs)

    def active_jobs(self) -> list[tuple[Run, Job]]:
        """Queued and running jobs, for the docker's list."""
        return [(r, j) for r in self.runs for j in r.jobs if not j.finished]

    @property
    def fraction(self) -> float:
        runs = [r for r in self.runs if not r.handled]
        return sum(r.fraction for r in runs) / len(runs) if runs else (1.0 if self.last_run else 0.0)

    # -- runs -------------------------------------------------------------------------------------
    def refine(self, whole_image: bool = False) -> None:
        """Start a run on the active image; the menu actions and the docker's buttons call this."""
        try:
            self._refine(whole_image)
        except Exception as exc:  # a bug must not become Krita's exception dialog
            traceback.print_exc()
            self._error(f"Unexpected error ({type(exc).__name__}): {exc}")

    def ask(self) -> Ask:
        s, controls = self.settings, self.controls()
        larger = s.scale != 1.0
        return Ask(preset=s.preset, scale=s.scale, seeds=editors.variation_seeds(s.seed, s.variations),
                   overrides=options.effective_overrides(s, controls), content=s.content, strength=s.strength,
                   islands=s.islands and not larger, faces=s.faces and not larger,
                   padding=editors.padding_for(options.context_px(s, controls)))

    def _refine(self, whole_image: bool) -> None:
        doc = document.active_document()
        self.refine_on(doc, document.active_node(doc), whole_image=whole_image)

    def refine_on(self, doc: Any, node: Any, *, whole_image: bool = False, ask: Ask | None = None) -> bool:
        """Read ``node`` of ``doc`` (or the merged image) and queue a run; False when refused (see
        ``last_error``). ``ask`` defaults to the docker's settings."""
        with uitime.timed("press"):
            return self._refine_on(doc, node, whole_image, ask or self.ask())

    def _refine_on(self, doc: Any, node: Any, whole_image: bool, ask: Ask) -> bool:
        if ask.content == editors.MODE_DETAIL and ask.scale != 1.0:
            self._error("The detail layer goes over your layer, so it needs scale 1×; a larger scale opens a new "
                        "document. Choose 1× or the normal output.")
            return False
        try:
            src = document.read_source(doc, node, whole_image=whole_image, padding=ask.padding,
                                       full_canvas=ask.scale != 1.0)
        except document.DocumentError as e:
            self._error(str(e))
            return False
        self.last_error = ""
        # the pixels are read a strip per tick, then the byte work (and the face search) runs on a
        # worker thread; the run starts when it is done
        self._preparing.append([None, src, ask])
        self.last_message = "Looking for faces in the selection…" if ask.faces else "Preparing the pixels…"
        self._timer.start()
        self.changed.emit()
        return True

    def _start_run(self, src: document.Source, ask: Ask, prepared: prepare.Parts) -> None:
        if not prepared.parts:
            self._error("The selection is empty: nothing to refine.")
            return
        jobs = []
        for k, seed in enumerate(ask.seeds):
            for part, data in prepared.parts:
                x, y, w, h = part.box
                request = dc.JobRequest(
                    pixels=data, width=w, height=h, channels=4, bit_depth=src.bit_depth,
                    preset=ask.preset, scale=ask.scale, seed=seed, overrides=dict(ask.overrides),
                    mask=part.mask, output="full" if ask.scale != 1.0 else "layer", client_name=EDITOR,
                    content=ask.content)
                piece = Piece(part.box, part.mask is not None, part.label, seed, first_seed=k == 0)
                jobs.append(Job(request, self.connect_client, context=piece))
        self.run_count += 1
        run = Run(self.run_count, src.target.description, src.target, jobs, content=ask.content,
                  strength=ask.strength, notes=src.notes + prepared.notes)
        self.runs.append(run)
        run.remembered = resume.remember(run)
        queued = "" if len(self.runs) == 1 else f" (queued behind {len(self.runs) - 1} run(s))"
        what = f"{len(prepared.parts)} part(s) × {len(ask.seeds)} seed(s) of the " if len(jobs) > 1 else "the "
        self.last_message = f"Refining {what}{src.target.description}{queued}"
        if run.notes:
            self.last_message += " (" + "; ".join(run.notes) + ")"
        self.scheduler.start_more(self.runs)

    def cancel(self, job_id: str = "") -> None:
        """Cancel one job (by id) or, without an id, every queued and running job."""
        for run in self.runs:
            for job in run.jobs:
                if not job_id or job.id == job_id:
                    job.cancel()
        self._timer.start()
        self.changed.emit()

    def cancel_all(self) -> None:
        for call, _src, _ask in self._preparing:
            if call is not None:
                call.done = True  # its answer is no longer wanted
        self._preparing = []
        self.cancel()

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
        uitime.timed_tick(self._tick_timed)  # how long the plugin holds Krita's UI thread per tick

    def _tick_timed(self) -> None:
        changed = False
        try:
            changed = self._poll_calls() or changed
            download = self.download
            if download is not None and download.poll():
                changed = True
                if download.finished and download.id != self._download_handled:
                    self._download_handled = download.id
                    self._download_ended(download)
            changed = self._poll_runs() or changed
        except Exception as exc:
            traceback.print_exc()
            self._error(f"Unexpected error ({type(exc).__name__}): {exc}")
        if (self._info_call is None and self._plan_call is None and self._resume_call is None and not self.busy and not self.downloading
                and not any(not r.handled for r in self.runs)):
            self._timer.stop()
        if changed:
            self.changed.emit()

    def _poll_calls(self) -> bool:
        changed = False
        call = self._info_call
        if call is not None and call.poll():
            self._info_call = None
            self._got_info(call)
            changed = True
        plan = self._plan_call
        if plan is not None and plan.poll():
            self._plan_call = None
            if plan.error:
                self._error(editors.with_hint(plan.error, plan.error_code, EDITOR))
            else:
                self.download_plan = plan.value
                self.download_plan_ready.emit()
        if self._resume_call is not None and self._resume_call.poll():
            self._resumed(self._resume_call)
            changed = True
        for entry in list(self._preparing):
            found, src, ask = entry
            if found is None:
                try:
                    prepare.read_some(src)
                except document.DocumentError as e:
                    self._preparing.remove(entry)
                    self._error(str(e))
                if src.reader is None and entry in self._preparing:
                    entry[0] = Call(lambda s=src, a=ask: prepare.parts(s, a, self.connect_client)).start()
            elif found.poll():
                self._preparing.remove(entry)
                changed = True
                if found.error:
                    self._error(editors.with_hint(found.error, found.error_code, EDITOR))
                else:
                    with uitime.timed("start run"):
                        self._start_run(src, ask, found.value)
        return changed

    def _poll_runs(self) -> bool:
        changed = False
        for run in self.runs:
            changed = run.poll() or changed
        changed = self.scheduler.start_more(self.runs) > 0 or changed
        latest = max((j for r in self.runs for j in r.jobs if j.preview is not None and not j.finished),
                     key=lambda j: j.fraction, default=None)
        if latest is not None and latest.preview is not self.preview:
            self.preview = latest.preview
            self.preview_label = next(r.label_of(latest) for r in self.runs if latest in r.jobs)
            changed = True
        for run in list(self.runs):
            if run.finished and run.layers is None and run.layers_call is None:
                run.layers_call = Call(lambda r=run: results.layer_bytes(r)).start()  # off the UI thread
            if run.layers_call is not None and run.layers_call.poll():
                run.layers, run.layers_call = run.layers_call.value or {}, None
            if run.finished and run.layers is not None and not run.handled and not self._applying:
                # guarded: Krita calls while inserting may run the event loop, and so this tick again
                self._applying = True
                try:
                    ended, value = results.insert_some(run)
                finally:
                    self._applying = False
                if ended:
                    self._finish(value)
                    run.handled = True
                    resume.forget(run)
                    self.last_run = run
                    self.runs.remove(run)
                    changed = True
        self.preview = self.preview if self.runs else None
        return changed

    def _got_info(self, call: Call) -> None:
        if call.error:
            self.info, self.server_ok = None, False
            self.server_text = editors.with_hint(call.error, call.error_code, EDITOR)
            return
        self.info, self.server_ok = call.value, True
        self.server_text = options.describe_server(self.info)
        self.resume_pending()

    def _finish(self, outcome: tuple[str, str, list[layers.Placed]]) -> None:
        message, error, self.last_placed = outcome  # kept: a new document lives while referenced
        if error:
            self._error(error)
        if message:
            self.last_message = message
            document.notify(f"Dermis: {message}")

    def _download_ended(self, download: Job) -> None:
        if download.phase == Phase.done:
            notes = list(getattr(download.result, "messages", []) or [])
            self.last_message = "Models downloaded" + "".join(f". {n}" for n in notes)
            document.notify(f"Dermis: {self.last_message}")
        elif download.phase == Phase.failed:
            self._error(editors.with_hint(download.error, download.error_code, EDITOR))
        else:
            self.last_message = "Download cancelled; the next download resumes it"
        self.refresh()  # the daemon now finds (some of) the files

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
        for run in self.runs:
            for job in run.jobs:
                if not job.finished and not run.remembered:  # remembered: the next Krita inserts it
                    job.cancel(wait=2.0)  # the one place that may block: Krita is exiting anyway
        # a download goes on in the daemon: it does not need this window

    def resume_pending(self) -> None:
        """Runs an earlier Krita (or plugin) left working: ask the daemon which of their jobs it still
        has, then follow those of open images (resume.py); the others wait for their image."""
        if self._resume_call is None and resume.pending():
            self._resume_call = Call(lambda: resume.known_jobs(self.connect_client)).start()
            self._timer.start()

    def _resumed(self, call: Call) -> None:
        self._resume_call = None
        if call.error:
            return self._error(editors.with_hint(call.error, call.error_code, EDITOR))
        for run in resume.restore_all(self.runs, call.value, self.connect_client, self.run_count):
            self.run_count = run.number
            self.runs.append(run)
            self.last_message = f"Resumed a run from before Krita restarted: {run.title}"


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
