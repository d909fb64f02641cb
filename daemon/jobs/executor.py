"""The executor: the one thread that owns the device and runs jobs with ``pipeline.run``.

gRPC handlers and the watch folder only enqueue; this thread takes the next job (editor jobs first),
runs it, and turns its progress into job events. A running batch job yields to editor jobs at its
next step or tile boundary: its CancelToken's ``checkpoint`` hook runs the waiting editor jobs right
there, on this same thread, then the batch job continues where it stopped (same result as if it had
run alone). If such an editor job cannot get enough device memory while the paused batch job holds
its models, the batch job is unwound and queued again (it restarts later) and the editor job runs
with the device to itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import pipeline
from pipeline import Cancelled, DermisError, Progress
from pipeline.errors import ErrorCode
from proto.events import EventKind, Preview

from ..errors import NeedsWholeDevice, Preempted
from .queue import Job, JobQueue, Priority
from .residency import Residency

log = logging.getLogger("dermis.daemon")

SHUTDOWN_REASON = "The daemon is shutting down; the job was cancelled."


class ProgressPublisher:
    """pipeline.Progress -> job events: stage starts, progress (throttled), previews, messages."""

    MIN_INTERVAL = 0.1  # s between progress events of the same stage (the last step always goes out)
    PREVIEW_INTERVAL = 0.5  # s between previews

    def __init__(self, job: Job, clock: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.stage = ""
        self._clock = clock
        self._last = 0.0
        self._last_preview = 0.0

    def __call__(self, p: Progress) -> None:
        now = self._clock()
        if not p.stage and p.message == "done":
            return  # run()'s own end marker: the done event follows once the result is stored
        if p.stage and p.steps == 0 and p.message == f"{p.stage}: started":
            self.stage = p.stage
            self._last = 0.0
            self.job.emit(EventKind.stage, stage=p.stage, message=p.message, fraction=p.fraction)
            return
        if p.preview is not None and now - self._last_preview >= self.PREVIEW_INTERVAL:
            self._last_preview = now
            self.job.emit(EventKind.preview, stage=p.stage, preview=rgb8_preview(p.preview, p.area, p.stage))
        if p.steps > 0:
            last_step = p.step >= p.steps and p.tile >= p.tiles
            if last_step or now - self._last >= self.MIN_INTERVAL:
                self._last = now
                self.job.emit(EventKind.progress, stage=p.stage, step=p.step, steps=p.steps, tile=p.tile,
                              tiles=p.tiles, fraction=min(p.fraction, 0.999), message=p.message)
            return
        if p.message:
            self.job.emit(EventKind.message, stage=p.stage, message=p.message)


def rgb8_preview(preview: np.ndarray, area: tuple[int, int, int, int] | None = None, stage: str = "") -> Preview:
    """A stage's preview (uint8, h x w x 3 or more channels) as the event's small RGB8 picture, with
    the part of the output canvas it shows."""
    rgb = np.ascontiguousarray(preview[..., :3], dtype=np.uint8)
    return Preview(width=rgb.shape[1], height=rgb.shape[0], pixels=rgb.tobytes(), area=area, stage=stage)


class Executor:
    def __init__(
        self,
        queue: JobQueue,
        residency: Residency,
        *,
        config: pipeline.Config | None = None,
        device: str | None = None,
        run_fn: Callable[..., Any] = pipeline.run,
    ) -> None:
        self.queue = queue
        self.residency = residency
        self.config = config or pipeline.Config()
        self.device = device
        self.run_fn = run_fn
        self._stack: list[Job] = []  # the running job, and an editor job nested in a paused batch job
        self._thread = threading.Thread(target=self._loop, name="dermis-executor", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._stack)

    @property
    def capacity(self) -> int:
        """Jobs it runs at once (a watch folder keeps this many in flight)."""
        return 1

    def stop(self, grace: float = 30.0) -> None:
        """Refuse new jobs, cancel waiting ones, let the running job finish for ``grace`` s, then
        cancel it; returns when the executor thread has ended (or 10 s after the cancel)."""
        running = self.queue.close(SHUTDOWN_REASON)
        self._stopping = True
        for job in running:
            job.emit(EventKind.message, message=f"The daemon is shutting down; the job has {grace:g} s to finish.")
        self._thread.join(grace)
        if self._thread.is_alive():
            for job in list(self._stack):
                job.token.cancel(SHUTDOWN_REASON)
            self._thread.join(10.0)

    # -- the thread --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self.queue.next(timeout=0.5)
            if job is None:
                if self.queue.closed:
                    return
                continue
            try:
                self._run(job, nested=False)
            except BaseException:  # never let the one device thread die silently
                log.exception("executor error on job %s", job.id)
                if not job.finished:
                    self.queue.finish_failed(job, ErrorCode.INTERNAL, "Internal error in the daemon's executor; "
                                             "its log has the details.")

    def _run(self, job: Job, *, nested: bool) -> bool:
        """Run one job to its end. Returns False if a nested job needs the whole device."""
        spec = job.spec
        job.token.checkpoint = self._yield_to_editors if spec.priority is Priority.BATCH and not nested else None
        publish = ProgressPublisher(job)
        self._stack.append(job)
        t0 = time.perf_counter()
        try:
            image = spec.image() if callable(spec.image) else spec.image
            mask = spec.mask() if callable(spec.mask) else spec.mask

            def attempt(recipe: pipeline.Recipe) -> pipeline.RunResult:
                return self.run_fn(
                    recipe, image, seed=spec.seed, region=spec.region, mask=mask, output=spec.output,
                    content=spec.content, detail_sigma=spec.detail_sigma,
                    progress=publish, cancel=job.token, config=self.config, models=self.residency.models,
                    device=self.device,
                )

            result = self.residency.run(attempt, spec.recipe, nested=nested)
            stored = spec.finish(result) if spec.finish is not None else result
        except NeedsWholeDevice:
            self.queue.requeue(job, "Not enough device memory while a batch job is paused: the job runs "
                                    "again as soon as the batch job has given the device back.")
            return False
        except Preempted:
            self.queue.requeue(job, "An editor job needed the whole device: this job starts again after it.")
        except Cancelled as e:
            self.queue.finish_cancelled(job, str(e))
        except DermisError as e:
            self.queue.finish_failed(job, e.code, str(e), stage=publish.stage)
        except Exception as e:  # a bug must fail the job, never the daemon
            log.exception("job %s failed", job.id)
            self.queue.finish_failed(job, ErrorCode.INTERNAL, f"Internal error in the daemon ({type(e).__name__}: "
                                     f"{e}); the daemon's log has the details.", stage=publish.stage)
        else:
            self.queue.finish_done(job, stored, nbytes=int(getattr(stored, "nbytes", 0)))
            log.info("job %s done in %.2fs", job.id, time.perf_counter() - t0)
        finally:
            self._stack.pop()
            job.token.checkpoint = None
        return True

    def _yield_to_editors(self) -> None:
        """Checkpoint of a running batch job (on this thread): run the waiting editor jobs now."""
        if self._stopping or len(self._stack) != 1:
            return
        batch = self._stack[0]
        paused = False
        while (editor := self.queue.take_editor()) is not None:
            if not paused:
                self.queue.pause(batch, "paused: an editor job runs first")
                paused = True
            if not self._run(editor, nested=True):
                raise Preempted()  # unwinds the batch job; the editor job is first in the queue again
        if paused:
            self.queue.resume(batch, "resumed")
