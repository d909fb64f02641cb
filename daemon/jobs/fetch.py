"""Model downloads as daemon jobs (the FetchModels rpc): their own thread, one download at a time.

A fetch job lives in the same ``JobQueue`` as image jobs (adopted: watched, cancelled and listed the
same way, by id) but never goes to the executor: a 48 GB download must not hold the device. Its
progress goes through the executor's ``ProgressPublisher`` (a stage per file, named by its weights
key); Cancel stops it at the next MiB and keeps the partial file, so the next fetch resumes it. What
to fetch is worked out when the job starts, so a second request queued behind a first one only
fetches what is still missing then.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

import pipeline
from pipeline import Cancelled, DermisError, fetch
from pipeline.errors import ErrorCode
from pipeline.models import WeightLocator
from proto.events import EventKind

from .executor import SHUTDOWN_REASON, ProgressPublisher
from .queue import LOCAL, Job, JobQueue, Priority

log = logging.getLogger("dermis.daemon")

KIND = "fetch_models"


@dataclass(frozen=True)
class FetchSpec:
    preset: str  # "" = the default preset (when roles is empty)
    roles: tuple[str, ...] = ()
    variant: str = ""
    accept_licences: bool = False
    client_name: str = ""
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    fingerprint: str = ""
    priority: Priority = Priority.EDITOR
    input_bytes: int = 0
    kind: str = KIND
    owner: str = LOCAL  # the client id that asked: only that client lists, watches and cancels the job

    def release(self) -> None:
        """Nothing to let go when the job ends: a download holds no pixels (JobSpec.release)."""

    def targets(self) -> list[str]:
        return list(self.roles) or [self.preset or pipeline.DEFAULT_PRESET]


@dataclass(frozen=True)
class FetchSummary:
    """What a finished fetch job holds as its result (no pixels): one line per file."""

    messages: tuple[str, ...]
    preset: str
    nbytes: int = 0


class ModelFetcher:
    def __init__(self, queue: JobQueue, config: pipeline.Config) -> None:
        self.queue = queue
        self.config = config
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="dermis-fetch", daemon=True)

    def plan(self, spec: FetchSpec) -> tuple[list[fetch.RoleStatus], fetch.FetchPlan]:
        """What the spec's targets need and what a fetch would do now (no network)."""
        rows = fetch.status(spec.targets(), WeightLocator(self.config), spec.variant or None)
        return rows, fetch.plan(rows, fetch.download_root(self.config), spec.variant or None)

    def submit(self, spec: FetchSpec) -> tuple[Job, bool]:
        self.plan(spec)  # an unknown preset, role or variant is refused now, not in the job
        job, duplicate = self.queue.adopt(spec)
        if not duplicate:
            with self._cond:
                self._pending.append(job)
                self._cond.notify_all()
            if self._running is not None or len(self._pending) > 1:
                job.emit(EventKind.queued, position=len(self._pending) - 1 + (self._running is not None))
        return job, duplicate

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what waits and what runs (its partial file stays for next time); wait for the thread."""
        with self._cond:
            self._stopping = True
            waiting, self._pending = list(self._pending), deque()
            running = self._running
            self._cond.notify_all()
        for job in waiting:
            self.queue.cancel(job.id, SHUTDOWN_REASON)
        if running is not None:
            running.token.cancel(SHUTDOWN_REASON)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                self._running = job
            try:
                if not job.finished:  # cancelled while it waited
                    self._run(job)
            except BaseException:  # never let the thread die silently
                log.exception("fetch job %s", job.id)
                if not job.finished:
                    self.queue.finish_failed(job, ErrorCode.INTERNAL, "Internal error in the daemon's "
                                             "downloader; its log has the details.")
            finally:
                with self._cond:
                    self._running = None

    def _run(self, job: Job) -> None:
        spec = job.spec
        assert isinstance(spec, FetchSpec), "the fetcher runs only the jobs it adopted"
        self.queue.begin(job)
        publish = ProgressPublisher(job)
        try:
            _rows, plan = self.plan(spec)
            notes = [f"{m.role}: {m.reason}" for m in plan.manual]
            for note in notes:
                job.emit(EventKind.message, message=note)
            done = fetch.fetch(plan, accept=lambda pending: spec.accept_licences, progress=publish,
                               cancel=job.token)
        except Cancelled as e:
            self.queue.finish_cancelled(job, str(e))
        except DermisError as e:
            self.queue.finish_failed(job, e.code, str(e), stage=publish.stage)
        else:
            lines = [f"{f.role}: {f.path} ({f.checked} checked)" for f in done] + notes
            if not done:
                lines.insert(0, "Nothing to download: " + ("every file is found." if not notes else
                                                           "the files named have no download the daemon can do."))
            self.queue.finish_done(job, FetchSummary(tuple(lines), spec.preset))
            log.info("fetch job %s done: %d file(s)", job.id, len(done))
