"""The folder's jobs that run now: each ``runner.run`` on a thread of its own, its outcome handed back.

Only the folder's loop thread touches the journal and the files (claims, journal rows, publishing,
archiving); these threads do nothing but wait for the runner, so several jobs in flight need no more
care than one: the loop takes each finished job from ``finished()`` and records it, one at a time.
Locally the folder keeps one job in flight; on a Ray cluster, one per live worker (``capacity``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import CancelToken, Image

from . import journal as J
from .runner import JobRunner, WatchJob
from .settings import Settings


@dataclass(frozen=True)
class Finished:
    entry: J.Entry  # the row as it was when the run started (state running)
    settings: Settings
    seconds: float
    result: Image | None  # None when the run raised
    error: BaseException | None


class InFlight:
    def __init__(self, runner: JobRunner, wake: threading.Event) -> None:
        self.runner = runner
        self._wake = wake  # set when a job finishes, so the loop records it at once
        self._tokens: dict[int, CancelToken] = {}  # journal row id -> its run's cancel token
        self._content: dict[int, tuple[str | None, str | None]] = {}  # row id -> (sha256, settings key)
        self._finished: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def capacity(self) -> int:
        """How many jobs may run at once: the runner's say (live cluster workers), at least one."""
        capacity: Callable[[], int] | None = getattr(self.runner, "capacity", None)  # optional
        return max(1, capacity()) if capacity is not None else 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._tokens)

    def running_same(self, entry: J.Entry) -> bool:
        """A job with this content and settings runs now (the later one waits, then is skipped)."""
        with self._lock:
            return (entry.sha256, entry.settings_key) in self._content.values()

    def start(self, entry: J.Entry, settings: Settings, job: WatchJob, token: CancelToken) -> None:
        with self._lock:
            self._tokens[entry.id] = token
            self._content[entry.id] = (entry.sha256, entry.settings_key)
        threading.Thread(target=self._run, args=(entry, settings, job, token),
                         name=f"dermis-watch-job-{entry.id}", daemon=True).start()

    def finished(self) -> list[Finished]:
        """Jobs that ended since the last call, no longer counted as in flight."""
        out: list[Finished] = []
        while True:
            try:
                out.append(self._take(self._finished.get_nowait()))
            except queue.Empty:
                return out

    def cancel_all(self, reason: str) -> None:
        with self._lock:
            tokens = list(self._tokens.values())
        for token in tokens:
            token.cancel(reason)

    def wait_all(self, timeout: float) -> list[Finished]:
        """After ``cancel_all``: collect every job as it ends, for at most ``timeout`` seconds."""
        end = time.monotonic() + timeout
        out = self.finished()
        while len(self) and time.monotonic() < end:
            try:
                out.append(self._take(self._finished.get(timeout=0.1)))
            except queue.Empty:
                continue
        return out

    def _take(self, done: Finished) -> Finished:
        with self._lock:
            self._tokens.pop(done.entry.id, None)
            self._content.pop(done.entry.id, None)
        return done

    def _run(self, entry: J.Entry, settings: Settings, job: WatchJob, token: CancelToken) -> None:
        t0 = time.perf_counter()
        result: Image | None = None
        error: BaseException | None = None
        try:
            result = self.runner.run(job, token)
        except BaseException as e:  # recorded by the loop thread, as if it had raised there
            error = e
        self._finished.put(Finished(entry, settings, time.perf_counter() - t0, result, error))
        self._wake.set()
