"""The cluster executor: the daemon's queue, run by ``DermisWorker`` actors instead of one local thread.

Everything in front of it is unchanged (gRPC API, token, queue with priorities, event logs, result
TTL, the watch folder's journal): one dispatch thread per worker takes the next job from the same
``JobQueue`` (editor jobs first), sends its image through Ray's object store, and turns the worker's
streamed items into the same job events as the local executor (``ProgressPublisher``).

A monitor thread forwards cancels to the worker running the job (it stops at its next step or tile
boundary) and, when an editor job waits while every worker runs a batch job, asks one of them to yield:
the batch job unwinds at its next boundary, goes back to the head of the queue, and the editor job
takes that worker. A worker that dies (its node gone) leaves the pool; its job runs again on another
worker, at most ``retries`` times, then fails naming the nodes. With no worker left, waiting jobs fail
with ``ClusterUnavailable``, or run on this machine when ``local_fallback`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray
from ray import exceptions as ray_errors

import pipeline
from pipeline.errors import ErrorCode
from proto.events import EventKind

from ..jobs.executor import SHUTDOWN_REASON, Executor, ProgressPublisher
from ..jobs.queue import Job, JobQueue, Priority, State
from .pool import ClusterUnavailable, Slot, WorkerPool
from .settings import ClusterSettings

log = logging.getLogger("dermis.cluster")

MONITOR_S = 0.05  # how often cancels and editor jobs are looked for


def connect(settings: ClusterSettings, queue: JobQueue, config: pipeline.Config, recipes: list[pipeline.Recipe], *,
            device: str | None = None, budget: int | None = None, fallback: Executor | None = None) -> ClusterExecutor:
    """Connect to the Ray cluster, start its workers (checking ``recipes``' weights) and return the executor
    that runs ``queue``'s jobs on them (not started): `dermis serve --ray` and `dermis watch --ray`."""
    pool = WorkerPool(settings, config, device=device, budget=budget)
    pool.start(recipes)
    log.info("cluster %s: %d worker(s) in the pool", settings.address, len(pool.live()))
    return ClusterExecutor(queue, pool, fallback=fallback)


class ClusterExecutor:
    def __init__(self, queue: JobQueue, pool: WorkerPool, *, fallback: Executor | None = None) -> None:
        self.queue = queue
        self.pool = pool
        self.fallback = fallback  # a local executor that takes over when the cluster is lost
        self.retries = pool.settings.retries
        self._deaths: dict[str, list[str]] = {}  # job id -> nodes that died running it
        self._running: dict[str, tuple[Slot, Job]] = {}  # slot name -> its job
        self._cancel_sent: set[str] = set()  # jobs whose cancel went out to their worker
        self._yield_sent: set[str] = set()  # batch jobs asked to give their worker to an editor job
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lost = False

    def start(self) -> None:
        for slot in self.pool.live():
            t = threading.Thread(target=self._loop, args=(slot,), name=f"dermis-{slot.name}", daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._monitor, name="dermis-cluster-monitor", daemon=True))
        for t in self._threads:
            t.start()

    @property
    def busy(self) -> bool:
        return bool(self._running) or (self.fallback is not None and self.fallback.busy)

    @property
    def capacity(self) -> int:
        """Jobs it runs at once: one per live worker (a watch folder keeps this many in flight)."""
        return max(1, len(self.pool.live()))

    def stop(self, grace: float = 30.0) -> None:
        """As the local executor: refuse new jobs, let running ones finish for ``grace`` s, cancel them."""
        running = self.queue.close(SHUTDOWN_REASON)
        for job in running:
            job.emit(EventKind.message, message=f"The daemon is shutting down; the job has {grace:g} s to finish.")
        end = time.monotonic() + grace
        while self._running and time.monotonic() < end:
            time.sleep(0.05)
        for slot, job in list(self._running.values()):
            job.token.cancel(SHUTDOWN_REASON)
            self._forward_cancel(slot, job)
        end = time.monotonic() + 10.0  # cancelled jobs end at their next boundary
        while self._running and time.monotonic() < end:
            time.sleep(0.05)
        self._stopping.set()
        for t in self._threads:
            t.join(10.0)
        if self.fallback is not None and self._lost:
            self.fallback.stop(grace)
        self.pool.shutdown()

    def workers(self) -> list[tuple[Slot, dict[str, Any]]]:
        """Every worker (removed ones too, with the reason) and its last known state."""
        return [(slot, self.pool.refresh(slot)) for slot in self.pool.slots]

    # -- one thread per worker ---------------------------------------------------------------------
    def _loop(self, slot: Slot) -> None:
        while slot.alive and not self._stopping.is_set():
            job = self.queue.next(timeout=0.5)
            if job is None:
                if self.queue.closed:
                    return
                continue
            with self._lock:
                self._running[slot.name] = (slot, job)
                slot.job = job.id
            try:
                self._dispatch(slot, job)
            except BaseException:  # never let a dispatch thread die with its job unfinished
                log.exception("cluster dispatch error on job %s", job.id)
                if not job.finished and job.state is not State.QUEUED:
                    self.queue.finish_failed(job, ErrorCode.INTERNAL, "Internal error in the daemon's cluster "
                                             "executor; its log has the details.")
            finally:
                with self._lock:
                    self._running.pop(slot.name, None)
                    slot.job = ""
                    self._cancel_sent.discard(job.id)
                    self._yield_sent.discard(job.id)
        if not self.pool.live():
            self._cluster_lost()

    def _dispatch(self, slot: Slot, job: Job) -> None:
        spec = job.spec
        publish = ProgressPublisher(job)
        image = spec.image() if callable(spec.image) else spec.image
        mask = spec.mask() if callable(spec.mask) else spec.mask
        job.emit(EventKind.message, message=f"running on cluster {slot.name} ({slot.node or 'starting'})")
        stream = slot.actor.run.options(num_returns="streaming").remote(
            job.id, spec.recipe, image, spec.seed, spec.region, mask, spec.output, spec.content, spec.detail_sigma)
        del image, mask  # the object store holds them now
        try:
            for ref in stream:
                item = ray.get(ref)
                kind = item[0]
                if kind == "progress":
                    publish(item[1])
                elif kind == "done":
                    stored = spec.finish(item[1]) if spec.finish is not None else item[1]
                    self.queue.finish_done(job, stored, nbytes=int(getattr(stored, "nbytes", 0)))
                elif kind == "cancelled":
                    self.queue.finish_cancelled(job, item[1])
                elif kind == "failed":
                    self.queue.finish_failed(job, ErrorCode(item[1]), item[2], stage=item[3] or publish.stage)
                elif kind == "preempted":
                    self.queue.requeue(job, "An editor job needed a cluster worker: this job starts again "
                                            "after it.")
        except ray_errors.RayTaskError as e:  # our code raised past the worker's own handling
            self.queue.finish_failed(job, ErrorCode.INTERNAL, f"Internal error on cluster {slot.name}: "
                                     f"{str(e).splitlines()[0]}", stage=publish.stage)
        except ray_errors.RayError as e:  # the actor or its node died
            self._worker_died(slot, job, e)

    def _worker_died(self, slot: Slot, job: Job, error: Exception) -> None:
        node = slot.node or slot.last.get("node", "") or "unknown node"
        self.pool.remove(slot, f"died while running a job on {node} ({type(error).__name__})")
        deaths = self._deaths.setdefault(job.id, [])
        deaths.append(node)
        if job.token.cancelled:
            self.queue.finish_cancelled(job, job.token.reason or "The job was cancelled.")
        elif len(deaths) > self.retries:
            self.queue.finish_failed(job, ErrorCode.CRASHED, (
                f"The job's cluster worker died {len(deaths)} times (nodes: {', '.join(deaths)}); it was not "
                "run again. Check those machines (`ray status`, their logs) and submit it again."))
        else:
            self.queue.requeue(job, f"Its cluster worker on {node} died; the job runs again on another worker "
                                    f"(retry {len(deaths)} of {self.retries}).")

    def _cluster_lost(self) -> None:
        """The last worker is gone: hand the queue to the local executor, or fail what waits."""
        with self._lock:
            if self._lost:
                return
            self._lost = True
        reasons = "; ".join(f"{s.name}: {s.removed}" for s in self.pool.slots)
        if self.fallback is not None:
            log.error("lost every cluster worker (%s); jobs run on this machine now", reasons)
            self.fallback.start()
            return
        log.error("lost every cluster worker (%s); jobs fail until the daemon restarts", reasons)
        error = ClusterUnavailable(f"The daemon lost its Ray cluster (every worker is gone: {reasons}); the job "
                                   "was not run. Restart the cluster and the daemon, or set [cluster] "
                                   "local_fallback = true to run jobs on this machine meanwhile.")
        threading.Thread(target=self._fail_all, args=(error,), name="dermis-cluster-lost", daemon=True).start()

    def _fail_all(self, error: ClusterUnavailable) -> None:
        while not self._stopping.is_set():
            job = self.queue.next(timeout=0.5)
            if job is not None:
                self.queue.finish_failed(job, error.code, str(error))
            elif self.queue.closed:
                return

    # -- cancels and editor jobs -------------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._stopping.wait(MONITOR_S):
            with self._lock:
                running = list(self._running.values())
            for slot, job in running:
                if job.token.cancelled and job.id not in self._cancel_sent:
                    self._forward_cancel(slot, job)
            if running and len(running) >= len(self.pool.live()) and self.queue.editor_waiting():
                self._make_room(running)

    def _make_room(self, running: list[tuple[Slot, Job]]) -> None:
        """Ask one batch job to yield its worker, unless one is yielding already."""
        batch = [(slot, job) for slot, job in running if job.priority is Priority.BATCH]
        if not batch or any(job.id in self._yield_sent for _, job in batch):
            return
        slot, job = max(batch, key=lambda sj: sj[1].number)  # the newest batch job loses the least work
        self._yield_sent.add(job.id)
        slot.actor.preempt.remote(job.id)

    def _forward_cancel(self, slot: Slot, job: Job) -> None:
        self._cancel_sent.add(job.id)
        try:
            slot.actor.cancel.remote(job.id, job.token.reason or "The job was cancelled.")
        except ray_errors.RayError:  # its worker is gone; the dispatch thread ends the job
            pass
