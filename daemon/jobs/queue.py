"""The job queue: every job the daemon knows, the order the executor takes them in, and their events.

Editor jobs come before batch jobs; within a class, first come first served. The queue is bounded
(jobs and bytes of waiting images) so a flood of requests is refused with ``QueueFull`` instead of
exhausting memory. Finished jobs are remembered for a while (results for ``result_ttl`` seconds, up to
``result_bytes``) so a client that lost its stream can resume and fetch the result.

Each job has an append-only log of ``proto.events.Event``s (the one event type the thin client reads
too) with sequence numbers; watchers (gRPC streams, the CLI, the watch folder) wait on it without ever
blocking the executor. Nothing here knows about gRPC: the watch
folder submits ``JobSpec`` objects in-process and waits with ``Job.wait()``.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from typing import Any

from pipeline.errors import ErrorCode, quoted
from proto.events import EventKind

from ..errors import JobExists, QueueFull, ShuttingDown, UnknownJob
from .job import ACTIVE, FINISHED, LOCAL, Job, JobSpec, Priority, State

__all__ = ["ACTIVE", "FINISHED", "LOCAL", "Job", "JobQueue", "JobSpec", "Priority", "State"]


class JobQueue:
    def __init__(
        self,
        *,
        max_queued: int = 32,
        max_queued_bytes: int = 8 << 30,
        history: int = 500,
        result_ttl: float = 900.0,
        result_bytes: int = 4 << 30,
    ) -> None:
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.history = history
        self.result_ttl = result_ttl
        self.result_bytes = result_bytes
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}  # every job still remembered, in submit order
        self._waiting: list[Job] = []  # queued jobs in run order
        self._counter = itertools.count(1)
        self._closed: str | None = None

    # -- submitting --------------------------------------------------------------------------------
    def check_capacity(self, incoming_bytes: int = 0) -> None:
        """Raise QueueFull / ShuttingDown before a client uploads a job that could not be queued."""
        with self._cond:
            self._check_capacity(incoming_bytes)

    def _check_capacity(self, incoming_bytes: int) -> None:
        if self._closed:
            raise ShuttingDown(self._closed)
        if len(self._waiting) >= self.max_queued:
            raise QueueFull(f"the daemon's queue is full ({self.max_queued} jobs waiting); "
                            "try again when some have finished.")
        waiting_bytes = sum(j.spec.input_bytes for j in self._waiting)
        if waiting_bytes + incoming_bytes > self.max_queued_bytes:
            raise QueueFull(
                f"the waiting jobs already hold {waiting_bytes / 2**20:,.0f} MiB of images and this one "
                f"adds {incoming_bytes / 2**20:,.0f} MiB, over the {self.max_queued_bytes / 2**20:,.0f} MiB "
                "limit; try again when some have finished.")

    def known(self, job_id: str, fingerprint: str, owner: str = LOCAL) -> Job | None:
        """The job with this id if it is the same request from the same client; JobExists if the id
        is taken by another request (or another client)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.spec.fingerprint and job.spec.fingerprint == fingerprint and job.spec.owner == owner:
                return job
            raise JobExists(f"job id {quoted(job_id)} is already used by a different request; "
                            "use a new id for a new job.")

    def submit(self, spec: JobSpec) -> tuple[Job, bool]:
        """Queue a job. Returns (job, duplicate): an identical resubmit returns the existing job."""
        with self._cond:
            existing = self.known(spec.job_id, spec.fingerprint, spec.owner)
            if existing is not None:
                return existing, True
            self._check_capacity(spec.input_bytes)
            job = Job(spec, next(self._counter))
            self._jobs[job.id] = job
            keys = [(j.priority, j.number) for j in self._waiting]
            self._waiting.insert(bisect.bisect_right(keys, (job.priority, job.number)), job)
            self._announce_positions()
            self._prune()
            self._cond.notify_all()
            return job, False

    def adopt(self, spec: Any) -> tuple[Job, bool]:
        """Register a job that another thread runs (a model download, daemon/jobs/fetch.py): it is
        watched, cancelled and listed like the others but never taken by the executor. Returns (job,
        duplicate) as ``submit`` does."""
        with self._cond:
            existing = self.known(spec.job_id, spec.fingerprint, spec.owner)
            if existing is not None:
                return existing, True
            if self._closed:
                raise ShuttingDown(self._closed)
            job = Job(spec, next(self._counter))
            self._jobs[job.id] = job
            self._prune()
            return job, False

    def begin(self, job: Job) -> None:
        """An adopted job starts on its own thread."""
        job.started = time.time()
        job._set_state(State.RUNNING, EventKind.started)

    # -- the executor's side -----------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Job | None:
        """The next job to run (marked running), or None after ``timeout`` or once closed and empty.
        An idle executor calls this every ``timeout`` s, which also lets expired results go."""
        with self._cond:
            self._prune()
            if not self._waiting and not self._closed:
                self._cond.wait(timeout)
            if not self._waiting:
                return None
            return self._start(self._waiting[0])

    def take_editor(self) -> Job | None:
        """A waiting editor job (marked running), for a batch job's step boundary; else None."""
        with self._cond:
            if self._waiting and self._waiting[0].priority is Priority.EDITOR and not self._closed:
                return self._start(self._waiting[0])
            return None

    def editor_waiting(self) -> bool:
        """Whether an editor job waits (the cluster executor then makes room for it)."""
        with self._cond:
            return bool(self._waiting) and self._waiting[0].priority is Priority.EDITOR

    def _start(self, job: Job) -> Job:
        self._waiting.remove(job)
        job.started = time.time()
        job.position = -1
        job._set_state(State.RUNNING, EventKind.started)
        self._announce_positions()
        return job

    def pause(self, job: Job, message: str) -> None:
        job._set_state(State.PAUSED, EventKind.message, stage="", message=message)

    def resume(self, job: Job, message: str) -> None:
        job._set_state(State.RUNNING, EventKind.message, stage="", message=message)

    def requeue(self, job: Job, message: str) -> None:
        """Put a started job back at the head of its class (it runs again from the start)."""
        with self._cond:
            job._set_state(State.QUEUED, EventKind.message, message=message)
            keys = [(j.priority, j.number) for j in self._waiting]
            self._waiting.insert(bisect.bisect_left(keys, (job.priority, 0)), job)
            job.position = -1
            self._announce_positions()
            self._cond.notify_all()

    def finish_done(self, job: Job, result: Any, nbytes: int = 0) -> None:
        with self._cond:
            job.result, job.result_bytes = result, nbytes
            job.fraction = 1.0
            job._set_state(State.DONE, EventKind.done, fraction=1.0)
            self._prune()

    def finish_failed(self, job: Job, code: ErrorCode, message: str, stage: str = "") -> None:
        with self._cond:
            job.error_code = code.value
            job._set_state(State.FAILED, EventKind.error, error_code=code.value, message=message, stage=stage)
            self._prune()

    def finish_cancelled(self, job: Job, message: str) -> None:
        with self._cond:
            job._set_state(State.CANCELLED, EventKind.cancelled, message=message)
            self._prune()

    # -- clients' side -----------------------------------------------------------------------------
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id; ``owner`` (a client id; None = anyone's) must have submitted it. Another
        client's job is reported as unknown, as if it did not exist."""
        with self._cond:
            self._prune()
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.spec.owner != owner):
            raise UnknownJob(f"the daemon has no job {quoted(job_id)} (finished jobs are forgotten after a "
                             "while, and all jobs when the daemon restarts).")
        return job

    def cancel(self, job_id: str, reason: str = "The job was cancelled.", owner: str | None = None) -> State:
        """Cancel a job; returns its state when the cancel arrived. Finished jobs stay as they are."""
        with self._cond:
            job = self.get(job_id, owner)
            state = job.state
            if state in FINISHED:
                return state
            with job._cond:  # no event can slip in between: cancel_seq marks exactly when it arrived
                job.token.cancel(reason)
                job.cancel_seq = job.last_seq
            if job in self._waiting:
                self._waiting.remove(job)
                job._set_state(State.CANCELLED, EventKind.cancelled, message=reason)
                self._announce_positions()
            elif state is State.QUEUED:  # an adopted job its thread has not begun: it never will
                job._set_state(State.CANCELLED, EventKind.cancelled, message=reason)
            # a running or paused job stops at its next step boundary (the executor ends it)
            return state

    def close(self, reason: str) -> list[Job]:
        """Refuse new jobs, cancel the waiting ones; returns the jobs still running."""
        with self._cond:
            self._closed = reason
            for job in list(self._waiting):
                job.token.cancel(reason)
                job._set_state(State.CANCELLED, EventKind.cancelled, message=reason)
            self._waiting.clear()
            self._cond.notify_all()
            return [j for j in self._jobs.values() if j.state in ACTIVE]

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def jobs(self, include_finished: bool = False, owner: str | None = None) -> list[Job]:
        """Running and paused first, then waiting in run order, then (optionally) finished, newest first;
        only ``owner``'s jobs unless it is None."""
        with self._cond:
            self._prune()
            active = [j for j in self._jobs.values() if j.state in ACTIVE]
            done = [j for j in self._jobs.values() if j.finished] if include_finished else []
            listed = active + list(self._waiting) + sorted(done, key=lambda j: -(j.finished_at or 0))
            return [j for j in listed if owner is None or j.spec.owner == owner]

    def active_count(self) -> int:
        with self._cond:
            return len(self._waiting) + sum(1 for j in self._jobs.values() if j.state in ACTIVE)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per client name: queued, running (incl. paused), done, failed, cancelled."""
        out: dict[str, dict[str, int]] = {}
        with self._cond:
            for j in self._jobs.values():
                row = out.setdefault(j.spec.client_name, dict.fromkeys(
                    ("queued", "running", "done", "failed", "cancelled"), 0))
                key = "running" if j.state in ACTIVE else j.state.value
                row[key] += 1
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _announce_positions(self) -> None:
        for i, job in enumerate(self._waiting):
            if job.position != i:
                job.position = i
                job.emit(EventKind.queued, position=i)

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond ``history``; drop results past their time or budget."""
        now = time.time()
        finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished_at or 0)
        for job in finished[: max(0, len(finished) - self.history)]:
            del self._jobs[job.id]
        kept = [j for j in finished if j.id in self._jobs and j.result is not None]
        total = sum(j.result_bytes for j in kept)
        for job in kept:
            if now - (job.finished_at or now) > self.result_ttl or total > self.result_bytes:
                total -= job.result_bytes
                job.result, job.result_bytes = None, 0
