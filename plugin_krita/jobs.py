"""Job state for the Krita plugin: requests in flight to the daemon, with no widgets and no Krita.

Threading rule (why this module exists): the thin client blocks, and Krita's UI must not. So each
blocking call runs on a worker thread that does nothing but talk to the daemon and put what it hears
on a queue. The UI thread calls ``poll()`` from a QTimer, which drains the queue into plain state
(phase, stage text, fraction, error, result); only the UI thread ever reads that state or touches
Krita. Cancel may be pressed at any time: it never blocks either (the cancel RPC gets its own
short-lived thread, as the client allows). A job may wait before it starts (the controller runs a few
at a time); cancelling it then ends it at once, without asking the daemon.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .thin_client import client as dc
from .thin_client import editors

Connect = Callable[[], "dc.DaemonClient"]  # the real client, or tests/fake_daemon.py


class Phase(enum.Enum):
    waiting = "waiting"  # not started yet: the controller runs a few jobs at a time
    submitting = "submitting"  # uploading the pixels
    queued = "queued"
    running = "running"
    cancelling = "cancelling"  # Cancel pressed, waiting for the daemon to confirm
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


FINAL = (Phase.done, Phase.failed, Phase.cancelled)


describe_error = editors.describe_error


@dataclass
class DownloadRequest:
    """A model download in the daemon (FetchModels): what ``Job.download`` sends instead of an image."""

    preset: str = ""  # "" = the daemon's default preset
    accept_licences: bool = False  # the user saw the plan's licences and said yes
    job_id: str = ""


class Job:
    """One daemon job on a worker thread, state updated by ``poll()``: a refine (submit + watch), or a
    model download (``Job.download``: fetch_models + watch), with the same phases, cancel and errors."""

    def __init__(self, request: Any, connect: Connect, *, context: Any = None,
                 begin: Callable[[dc.DaemonClient], str] | None = None,
                 describe: Callable[[dc.Event], str] | None = None) -> None:
        if not request.job_id:
            # chosen here so Cancel has an id to send even before the upload returns
            request.job_id = uuid.uuid4().hex
        self.request = request
        self.id: str = request.job_id
        self.context = context  # what the editor needs to place the result; opaque here
        self.phase = Phase.waiting
        self.stage = ""
        self.status_text = "Waiting in Krita"
        self.preview: dc.Preview | None = None  # the latest look at the work in progress
        self.fraction = 0.0
        self.position = 0
        self.messages: list[str] = []
        self.error = ""
        self.error_code = ""
        self.result: dc.JobResult | None = None
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self._connect = connect
        self._begin = begin or (lambda client: client.submit(self.request))
        self._describe = describe or editors.progress_text
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._client: dc.DaemonClient | None = None
        self._submitted = False
        self._cancel_requested = False
        self._thread = threading.Thread(target=self._work, name=f"dermis-job-{self.id[:8]}", daemon=True)

    @classmethod
    def download(cls, preset: str, connect: Connect, *, accept_licences: bool) -> Job:
        """Download the models ``preset`` lacks, in the daemon (progress is per file, in MiB)."""
        request = DownloadRequest(preset, accept_licences, uuid.uuid4().hex)
        job = cls(request, connect, describe=download_text, begin=lambda client: client.fetch_models(
            preset, accept_licences=accept_licences, job_id=request.job_id, client_name="krita"))
        job.status_text = "Asking the daemon to download…"
        job._start_text = job.status_text
        return job

    # -- UI thread -------------------------------------------------------------------------------
    _start_text = "Sending the image to the daemon…"

    def start(self) -> Job:
        with self._lock:
            if self.phase != Phase.waiting:
                return self  # cancelled before it started, or started already
            self.phase = Phase.submitting
            self.status_text = self._start_text
            self.started_at = time.monotonic()
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self.phase != Phase.waiting and self._thread.ident is not None

    @property
    def finished(self) -> bool:
        return self.phase in FINAL

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def cancel(self, wait: float = 0.0) -> None:
        """Ask the daemon to stop this job; returns at once (or after up to ``wait`` s, at exit)."""
        with self._lock:
            if self.finished or self._cancel_requested:
                return
            self._cancel_requested = True
            if self.phase == Phase.waiting:  # never started: nothing to tell the daemon
                self._end(Phase.cancelled, text="Cancelled")
                return
            client, submitted = self._client, self._submitted
        self.phase = Phase.cancelling
        self.status_text = "Cancelling…"
        if client is not None and submitted:
            sender = threading.Thread(target=self._send_cancel, args=(client,), daemon=True)
            sender.start()
            if wait > 0:
                sender.join(wait)
        # else: the worker sends the cancel itself right after the upload (see _work)

    def poll(self) -> bool:
        """Apply what the worker heard since the last call; True when anything changed."""
        changed = False
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            if kind == "event":
                self._apply(payload)
            elif kind == "note":
                self.messages.append(payload)
            elif kind == "error":
                self._fail(payload)
            elif kind == "ended" and not self.finished:
                self._end(Phase.failed, error="The daemon ended the job's event stream without a result.")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker is done (tests and kritarunner only, never the UI)."""
        if self._thread.ident is None:
            self.poll()
            return self.finished
        self._thread.join(timeout)
        self.poll()
        return not self._thread.is_alive()

    # -- state changes (UI thread, via poll) ---------------------------------------------------------
    def _apply(self, ev: dc.Event) -> None:
        K = dc.EventKind
        if ev.kind == K.queued:
            self.position = ev.position
            if self.phase != Phase.cancelling:
                self.phase = Phase.queued
                self.status_text = editors.event_text(ev) or self.status_text
        elif ev.kind == K.started:
            if self.phase != Phase.cancelling:
                self.phase = Phase.running
                self.status_text = editors.event_text(ev) or self.status_text
        elif ev.kind == K.stage:
            self.stage = ev.stage
            if self.phase != Phase.cancelling:
                self.status_text = editors.event_text(ev) or self.status_text
        elif ev.kind == K.progress:
            self.fraction = max(self.fraction, min(1.0, ev.fraction))
            if ev.stage:
                self.stage = ev.stage
            if self.phase != Phase.cancelling:
                self.status_text = self._describe(ev)
        elif ev.kind == K.preview:
            self.preview = ev.preview
        elif ev.kind == K.message:
            if ev.message:
                self.messages.append(ev.message)
        elif ev.kind == K.done:
            if self._cancel_requested:
                # the result raced the cancel; the user asked for nothing, so nothing is inserted
                self._end(Phase.cancelled, text="Cancelled (a result that arrived meanwhile was dropped)")
            else:
                self.result = ev.result
                self.fraction = 1.0
                self._end(Phase.done, text="Done")
        elif ev.kind == K.error:
            self._end(Phase.failed, error=ev.message or "The job failed.", code=ev.error_code)
        elif ev.kind == K.cancelled:
            self._end(Phase.cancelled, text="Cancelled")

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, dc.JobCancelled):
            self._end(Phase.cancelled, text="Cancelled")
        else:
            self._end(Phase.failed, error=describe_error(exc), code=getattr(exc, "code", "internal"))

    def _end(self, phase: Phase, *, text: str = "", error: str = "", code: str = "") -> None:
        if self.finished:
            return
        self.phase = phase
        self.error, self.error_code = error, code
        self.status_text = text or error
        self.ended_at = time.monotonic()

    # -- worker thread: network only, never Krita --------------------------------------------------
    def _work(self) -> None:
        client = None
        try:
            client = self._connect()
            with self._lock:
                self._client = client
            job_id = self._begin(client)
            with self._lock:
                self._submitted = True
                cancel_now = self._cancel_requested
            if cancel_now:
                client.cancel(job_id)
            for ev in client.watch(job_id):
                self._events.put(("event", ev))
            self._events.put(("ended", None))
        except Exception as exc:  # everything ends as a readable message in the docker, never a dialog
            if not isinstance(exc, dc.ClientError):
                traceback.print_exc()
            self._events.put(("error", exc))
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    def _send_cancel(self, client: dc.DaemonClient) -> None:
        try:
            client.cancel(self.id)
        except Exception as exc:
            self._events.put(("note", f"Cancel failed: {describe_error(exc)}"))


def download_text(ev: dc.Event) -> str:
    return editors.download_text(ev) or editors.progress_text(ev)


class Call:
    """One blocking client call (e.g. ``info()``) on a worker thread; ``poll()`` on the UI thread."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._box: queue.SimpleQueue = queue.SimpleQueue()
        self.done = False
        self.value: Any = None
        self.error = ""
        self.error_code = ""
        self._thread = threading.Thread(target=self._work, name="dermis-call", daemon=True)

    def start(self) -> Call:
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            self._box.put((True, self._fn()))
        except Exception as exc:
            if not isinstance(exc, dc.ClientError):
                traceback.print_exc()
            self._box.put((False, exc))

    def poll(self) -> bool:
        """True once the call has finished (then ``value`` or ``error`` is set)."""
        if self.done:
            return True
        try:
            ok, payload = self._box.get_nowait()
        except queue.Empty:
            return False
        self.done = True
        if ok:
            self.value = payload
        else:
            self.error = describe_error(payload)
            self.error_code = getattr(payload, "code", "internal")
        return True

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.poll()
