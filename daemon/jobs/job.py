"""One job: what it needs (``JobSpec``), its state, cancel token, result and event log (``Job``).

The queue (queue.py) orders and bounds jobs; this is what each of them is. A job belongs to the client
that submitted it (``JobSpec.owner``), lets go of its input once it has finished, and keeps an
append-only log of ``proto.events.Event``s with sequence numbers that watchers wait on.
"""

from __future__ import annotations

import bisect
import enum
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import CancelToken, Image, Recipe, Region
from proto.events import TERMINAL, Event, EventKind


class Priority(enum.IntEnum):
    EDITOR = 0  # someone waits in front of an editor or a terminal
    BATCH = 1  # watch folder and other unattended work


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # a batch job that let an editor job run at its step boundary
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (State.DONE, State.FAILED, State.CANCELLED)
ACTIVE = (State.RUNNING, State.PAUSED)
LOCAL = "@local"  # owner of jobs submitted in-process (the watch folder); no wire client id has an "@"


def _released() -> Any:
    raise RuntimeError("this job's input was released when it finished")


@dataclass
class JobSpec:
    """Everything a job needs, in pipeline types. ``image``/``mask`` may be callables that produce
    them on the executor thread (e.g. decoding an upload or a file only when the job starts)."""

    recipe: Recipe
    image: Image | Callable[[], Image]
    seed: int
    region: Region | None = None
    mask: np.ndarray | Callable[[], np.ndarray] | None = None  # float32 (H, W) 0..1
    output: str = "full"  # "full" or "layer"
    content: str = "normal"  # "normal" or "detail" (the detail layer, pipeline/detail.py)
    detail_sigma: float = 8.0  # px at the output scale, for content "detail"
    priority: Priority = Priority.BATCH
    client_name: str = ""  # "krita", "gimp", "cli", "watch": grouping in counts and logs
    owner: str = LOCAL  # the client id that submitted it: only that client lists, watches, cancels it
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    fingerprint: str = ""  # same id + same fingerprint = the same request (idempotent resubmit)
    input_bytes: int = 0  # size of the waiting image data, for the queue's byte budget
    # runs on the executor thread with the RunResult; what it returns is stored as ``Job.result``
    # (the servicer turns it into raw bytes; in-process users may keep the RunResult)
    finish: Callable[[Any], Any] | None = None

    def release(self) -> None:
        """Let go of the input (an upload's buffer, a decoded image) once the job has ended: finished
        jobs are remembered for a while, their pixels must not be."""
        self.image = _released
        self.mask = None
        self.input_bytes = 0


class Job:
    """One job: its spec, state, cancel token, result and event log."""

    def __init__(self, spec: JobSpec, number: int) -> None:
        self.spec = spec
        self.id = spec.job_id
        self.number = number  # submit order
        self.state = State.QUEUED
        self.token = CancelToken()
        self.result: Any = None
        self.result_bytes = 0
        self.error_code = ""
        self.message = ""
        self.fraction = 0.0
        self.position = -1
        self.submitted = time.time()
        self.started: float | None = None
        self.finished_at: float | None = None
        self.cancel_seq: int | None = None  # last event seq when a cancel arrived (for latency checks)
        self._events: list[Event] = []
        self._seq = 0
        self._cond = threading.Condition()

    @property
    def priority(self) -> Priority:
        return self.spec.priority

    @property
    def kind(self) -> str:
        """"" for an image job, "fetch_models" for a download (daemon/jobs/fetch.py)."""
        return getattr(self.spec, "kind", "")

    @property
    def preset(self) -> str:
        spec = self.spec
        return spec.recipe.preset if isinstance(spec, JobSpec) else getattr(spec, "preset", "")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def last_seq(self) -> int:
        return self._seq

    def emit(self, kind: EventKind, **fields: Any) -> Event:
        with self._cond:
            self._seq += 1
            event = Event(kind, self.id, self._seq, **fields)
            if kind is EventKind.preview:  # only the newest preview is worth keeping for a resuming watcher
                self._events = [e for e in self._events if e.kind is not EventKind.preview]
            elif kind is EventKind.progress:
                self.fraction = event.fraction
            if kind is EventKind.message or kind in TERMINAL:
                self.message = event.message or self.message
            self._events.append(event)
            self._cond.notify_all()
            return event

    def _set_state(self, state: State, kind: EventKind | None = None, **fields: Any) -> None:
        """Change the state and (atomically, for watchers) emit the matching event."""
        with self._cond:
            self.state = state
            if state in FINISHED:
                self.finished_at = time.time()
                self.spec.release()
            if kind is not None:
                self.emit(kind, **fields)
            self._cond.notify_all()

    def events_after(self, seq: int, timeout: float | None = None) -> list[Event]:
        """Events with seq > ``seq``; waits up to ``timeout`` s for one unless the job has finished."""
        with self._cond:
            if self._seq <= seq and not self.finished:
                self._cond.wait(timeout)
            start = bisect.bisect_right([e.seq for e in self._events], seq)
            return self._events[start:]

    def final_event(self) -> Event | None:
        """The event a finished job ended with (done, error or cancelled); None while it runs."""
        with self._cond:
            return self._events[-1] if self.finished and self._events else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finished (True) or ``timeout`` passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.finished, timeout)

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.state.value}, {self.priority.name.lower()}, {self.kind or self.preset})"
