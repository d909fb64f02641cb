"""The cluster executor: the daemon's queue, run by ``DermisWorker`` actors instead of one local thread.

Everything in front of it is unchanged (gRPC API, token, queue with priorities, event logs, result
TTL, the watch folder's journal): one dispatch thread per worker takes the next job from the same
``JobQueue`` (editor jobs first), sends its image through Ray's object store, and turns the worker's
streamed items into the same job events as the local executor (``ProgressPublisher``).

A monitor thread forwards cancels to the worker running the job (it stops at its next step or tile
boundary) and, when an editor job waits while every worker runs a batch job, asks one of them to yield:
the batch job unwinds at its next boundary, goes back to the head of the queue, and the editor job
takes that worker.

Faults (docs/cluster.md):
- A worker that dies (its node gone) leaves the pool until Ray has restarted it on a node with a free
  unit (the same node back, or a new one; pool.py); its dispatch thread waits for that. Its job runs
  again on another worker.
- A worker whose models fail to load during a job (``load_failed``: a file missing or broken on its
  node) is removed from the pool with the reason and the job runs again on another worker, where the
  same files may load fine. When they fail the same way there too, the fault is the files (or the
  preset), not a node: the job fails with the loader's error and the workers stay in the pool.
- Both kinds of re-run count against ``retries``; past it the job fails naming the nodes. An error
  of the job itself (``failed``: a bad parameter or input) fails the job and the worker stays.
- With no worker in the pool, waiting jobs fail with ``ClusterUnavailable`` naming the cluster, or run
  on this machine when ``local_fallback`` is set, until a worker is back.
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
NODES_S = 1.0  # how often the monitor asks the cluster which nodes are alive and whether a unit is free


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
        self._load_failures: dict[str, list[tuple[Slot, str]]] = {}  # job id -> workers that failed to load its models
        self._running: dict[str, tuple[Slot, Job]] = {}  # slot name -> its job
        self._cancel_sent: set[str] = set()  # jobs whose cancel went out to their worker
        self._yield_sent: set[str] = set()  # batch jobs asked to give their worker to an editor job
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lost = False  # no worker in the pool: jobs fail or run on the fallback
        self._fallback_started = False

    def start(self) -> None:
        for slot in self.pool.live():
            self._start_thread(slot)
        self._start_thread(None)

    def _start_thread(self, slot: Slot | None) -> None:
        """A worker's dispatch thread, or (None) the monitor."""
        target, args, name = (self._monitor, (), "monitor") if slot is None else (self._loop, (slot,), slot.name)
        t = threading.Thread(target=target, args=args, name=f"dermis-cluster-{name}", daemon=True)
        self._threads.append(t)
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
        if self.fallback is not None and self._fallback_started:
            self.fallback.stop(grace)
        self.pool.shutdown()

    def workers(self) -> list[tuple[Slot, dict[str, Any]]]:
        """Every worker (removed ones too, with the reason) and its last known state."""
        return [(slot, self.pool.refresh(slot)) for slot in self.pool.slots]

    # -- one thread per worker ---------------------------------------------------------------------
    def _loop(self, slot: Slot) -> None:
        while not self._stopping.is_set() and not slot.killed:
            if slot.waiting:  # starting, or restarting after its node died
                if self.pool.await_ready(slot) and slot.alive:
                    self._regained()
                continue
            if slot.removed:  # out of the pool, its actor idle; a readmit brings it back
                self._stopping.wait(0.5)
                continue
            job = self.queue.next(timeout=0.5)
            if job is None:
                if self.queue.closed:
                    return
                continue
            with self._lock:
                self._running[slot.name] = (slot, job)
                slot.job = job.id
            try:
                if not slot.alive:  # the monitor saw its node die while this thread waited for a job
                    self.queue.requeue(job, "Its cluster worker's node died before the job started; it runs on "
                                            "another worker.")
                    continue
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
                elif kind == "load_failed":
                    self._load_failed(slot, job, ErrorCode(item[1]), item[2], item[3] or publish.stage)
                elif kind == "preempted":
                    self.queue.requeue(job, "An editor job needed a cluster worker: this job starts again "
                                            "after it.")
        except ray_errors.RayTaskError as e:  # our code raised past the worker's own handling
            self.queue.finish_failed(job, ErrorCode.INTERNAL, f"Internal error on cluster {slot.name}: "
                                     f"{str(e).splitlines()[0]}", stage=publish.stage)
        except ray_errors.RayError as e:  # the actor or its node died
            self._worker_died(slot, job, e)

    def _tries(self, job_id: str) -> int:
        """Re-runs a job has had: its workers that died plus those whose models failed to load."""
        return len(self._deaths.get(job_id, [])) + len(self._load_failures.get(job_id, []))

    def _worker_died(self, slot: Slot, job: Job, error: Exception) -> None:
        node = slot.node or slot.last.get("node", "") or "unknown node"
        self.pool.restarting(slot, f"its node {node} died while it ran a job ({type(error).__name__})")
        deaths = self._deaths.setdefault(job.id, [])
        deaths.append(node)
        if job.token.cancelled:
            self.queue.finish_cancelled(job, job.token.reason or "The job was cancelled.")
        elif self._tries(job.id) > self.retries:
            self.queue.finish_failed(job, ErrorCode.CRASHED, (
                f"The job's cluster worker died {len(deaths)} times (nodes: {', '.join(deaths)}); it was not "
                "run again. Check those machines (`ray status`, their logs) and submit it again."))
        else:
            self.queue.requeue(job, f"Its cluster worker on {node} died; the job runs again on another worker "
                                    f"(retry {self._tries(job.id)} of {self.retries}).")
        self._check_pool()

    def _idle_node_died(self, slot: Slot) -> None:
        self.pool.restarting(slot, f"its node {slot.node or '?'} died")
        self._check_pool()

    def _load_failed(self, slot: Slot, job: Job, code: ErrorCode, text: str, stage: str) -> None:
        """The job's models did not load on ``slot``'s node: take the worker out of the pool and run the job
        on another one, unless they failed the same way elsewhere (then the files are at fault)."""
        node = slot.node or "unknown node"
        with self._lock:
            failures = self._load_failures.setdefault(job.id, [])
            alike = [s for s, t in failures if t == text]
            failures.append((slot, text))
            others = [s for s in self.pool.live() if s is not slot]
        if alike or not others:
            for s in alike:
                self.pool.readmit(s)
            names = ", ".join(s.name for s in [*alike, slot])
            why = (f"It failed the same way on cluster workers {names}, so the fault is in the model files or the "
                   "preset, not in one node; the workers stay in the pool." if alike else
                   f"On cluster {slot.name} ({node}), the only worker in the pool, which stays in it.")
            self.queue.finish_failed(job, code, f"{text}\n{why}", stage=stage)
            return
        self.pool.remove(slot, f"its models failed to load: {text}")
        if job.token.cancelled:
            self.queue.finish_cancelled(job, job.token.reason or "The job was cancelled.")
        elif self._tries(job.id) > self.retries:
            self.queue.finish_failed(job, code, f"{text}\nOn cluster {slot.name} ({node}), which left the pool; "
                                                f"the job was run {self._tries(job.id)} times.", stage=stage)
        else:
            self.queue.requeue(job, f"Its models failed to load on cluster {slot.name} ({node}), which left the "
                                    f"pool; the job runs again on another worker (retry {self._tries(job.id)} of "
                                    f"{self.retries}).")

    def _check_pool(self) -> None:
        """No worker left in the pool: hand the queue to the local executor, or fail what waits, until a
        worker is back (``_regained``)."""
        if self.pool.live() or self._stopping.is_set():
            return
        with self._lock:
            if self._lost:
                return
            self._lost = True
            start_fallback = self.fallback is not None and not self._fallback_started
            self._fallback_started = self._fallback_started or start_fallback
        reasons = "; ".join(f"{s.name}: {s.out}" for s in self.pool.slots)
        address = self.pool.settings.address
        if self.fallback is not None:
            log.error("no cluster worker left at %s (%s); jobs run on this machine now", address, reasons)
            if start_fallback:
                self.fallback.start()
            return
        log.error("no cluster worker left at %s (%s); jobs fail until one is back", address, reasons)
        error = ClusterUnavailable(
            f"The daemon lost its Ray cluster at {address}: no worker is left ({reasons}); the job was not run. "
            "A worker whose node died starts again when that node (or another offering "
            f"{self.pool.settings.resource!r}) joins the cluster; or set [cluster] local_fallback = true to run "
            "jobs on this machine meanwhile.")
        threading.Thread(target=self._fail_all, args=(error,), name="dermis-cluster-lost", daemon=True).start()

    def _regained(self) -> None:
        with self._lock:
            if not self._lost:
                return
            self._lost = False
        log.warning("a cluster worker is back in the pool: jobs run on the cluster again")

    def _fail_all(self, error: ClusterUnavailable) -> None:
        while self._lost and not self._stopping.is_set():
            job = self.queue.next(timeout=0.5)
            if job is None:
                if self.queue.closed:
                    return
            elif self.pool.live():  # a worker came back meanwhile (its thread clears _lost in a moment)
                self.queue.requeue(job, "A cluster worker is back; the job runs on it.")
                return
            else:
                self.queue.finish_failed(job, error.code, str(error))

    # -- cancels and editor jobs -------------------------------------------------------------------
    def _monitor(self) -> None:
        nodes_due = 0.0
        while not self._stopping.wait(MONITOR_S):
            if time.monotonic() >= nodes_due:
                nodes_due = time.monotonic() + NODES_S
                for slot in self.pool.on_dead_node():
                    if slot.removed:
                        self.pool.kill(slot)
                    elif not slot.job:  # a running job's own call fails and says so (_worker_died)
                        self._idle_node_died(slot)
                new = self.pool.grow() if not self.queue.closed else None
                if new is not None:
                    self._start_thread(new)
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
