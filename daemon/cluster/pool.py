"""The driver's side of the cluster: connect to Ray, start one ``DermisWorker`` per GPU, keep the pool.

Each worker asks for one unit of the configured resource (``GPU`` by default; a custom one such as
``dermis_worker`` in the tests), so Ray places at most one worker per GPU and sets its
CUDA_VISIBLE_DEVICES. A slot is in the pool (takes jobs), waiting (starting, or restarting after its
node died), or removed; `dermis status` shows why a worker is not in the pool.

- A worker whose node lacks a ``preload`` preset's weights, or whose models fail to load during a job,
  is removed. Its actor stays on its node, idle, holding its unit of the resource, so Ray places no new
  worker on that node (which would fail the same way) until the daemon restarts.
- A worker whose node dies is restarted by Ray (the actor's ``max_restarts``) as soon as a node with a
  free unit joins the cluster, the same node back or a new one; once it passes the weight check again
  it is back in the pool (``await_ready``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import exceptions as ray_errors

import pipeline
from pipeline import DermisError
from pipeline.errors import ErrorCode

from .settings import ClusterSettings
from .worker import DermisWorker

log = logging.getLogger("dermis.cluster")

DESCRIBE_TIMEOUT_S = 3.0
FIRST_DESCRIBE_S = 30.0  # a worker that just started answers its first describe slowly on a loaded machine
CONNECT_TIMEOUT_S = 5.0  # for the head's GCS port to answer; ray.init itself retries for minutes
READY_POLL_S = 0.5  # how long one wait for a (re)starting worker lasts before the caller looks again
RemoteWorker = ray.remote(DermisWorker)


class ClusterUnavailable(DermisError):
    """The daemon cannot reach its Ray cluster, or the cluster has no worker left."""

    code = ErrorCode.NETWORK_UNAVAILABLE


@dataclass
class Slot:
    """One worker actor and what the driver knows about it."""

    name: str  # "worker-1"
    actor: Any
    node: str = ""  # Ray node id, then host (ip) once described
    removed: str = ""  # why it left the pool for good ("" while in it)
    waiting: str = "starting"  # why it is not in the pool yet: starting, or restarting after its node died
    killed: bool = False  # its actor is gone for good (its dispatch thread ends)
    job: str = ""  # the job it runs now
    last: dict[str, Any] = field(default_factory=dict)  # its last describe()

    @property
    def alive(self) -> bool:
        """In the pool: it takes jobs."""
        return not self.removed and not self.waiting

    @property
    def out(self) -> str:
        """Why it takes no jobs ("" while in the pool), for `dermis status`."""
        return f"removed: {self.removed}" if self.removed else self.waiting


class WorkerPool:
    def __init__(self, settings: ClusterSettings, config: pipeline.Config, device: str | None = None,
                 budget: int | None = None) -> None:
        self.settings = settings
        self.slots: list[Slot] = []
        self._lock = threading.Lock()
        self._config, self._device, self._budget = config, device, budget
        self._owns_ray = False  # this pool connected (another pool in the process may share it)
        self._recipes: list[pipeline.Recipe] = []  # the preload presets, checked again after a restart
        self._free_seen = 0  # grow() calls in a row that saw a free unit

    def start(self, recipes: list[pipeline.Recipe]) -> None:
        """Connect, start the workers and check their weights for ``recipes`` (bounded in time)."""
        s = self.settings
        self._recipes = list(recipes)
        try:
            if not ray.is_initialized():
                _check_reachable(s.address)
                self._owns_ray = True
                ray.init(address=s.address, namespace="dermis", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            offered = int(ray.cluster_resources().get(s.resource, 0))
            free = self.free_units()
        except (OSError, RuntimeError, ray_errors.RaySystemError) as e:  # ConnectionError is an OSError
            raise ClusterUnavailable(f"cannot connect to the Ray cluster at {s.address} ({e}); start it with "
                                     "`ray start --head` (docs/cluster.md) or check the address.") from None
        count = s.workers or free  # 0: one per unit nobody else (another daemon or watcher) holds
        if count <= 0:
            raise ClusterUnavailable(f"the Ray cluster at {s.address} offers no free {s.resource!r} resource "
                                     f"({offered} in all), so no worker can start; give the nodes GPUs or set "
                                     "[cluster] resource.")
        for _ in range(count):
            self.add()
        checks = {slot.name: slot.actor.preflight.remote(recipes) for slot in self.slots}
        for slot in self.slots:
            try:
                self._admit(slot, str(ray.get(checks[slot.name], timeout=s.start_timeout_s)))
            except ray_errors.GetTimeoutError:
                self.remove(slot, f"did not start within {s.start_timeout_s:g} s (does the cluster have {count} "
                                  f"free unit(s) of {s.resource!r}?)", kill=True)
            except ray_errors.RayError as e:
                self.remove(slot, f"failed to start: {str(e).splitlines()[0]}", kill=True)
        if not any(s.alive for s in self.slots):
            for slot in self.slots:  # the removed ones hold their units
                self.kill(slot)
            raise ClusterUnavailable("no cluster worker could start: " +
                                     "; ".join(f"{s.name}: {s.removed}" for s in self.slots))

    def add(self) -> Slot:
        """One more worker, starting (``await_ready`` admits it once Ray has placed it and its check passed)."""
        # max_restarts: Ray starts the actor again on a node with a free unit when its node dies;
        # max_task_retries 0: a job is never run again by Ray, only by the executor (one outcome per job)
        s = self.settings
        need = {"num_gpus": 1} if s.resource == "GPU" else {"resources": {s.resource: 1}}
        actor = RemoteWorker.options(num_cpus=0, max_concurrency=4, max_restarts=-1, max_task_retries=0,
                                     **need).remote(self._config, self._device, self._budget)
        slot = Slot(f"worker-{len(self.slots) + 1}", actor)
        with self._lock:
            self.slots.append(slot)
        return slot

    def free_units(self) -> int:
        """Units of the worker resource that no actor holds now."""
        return int(ray.available_resources().get(self.settings.resource, 0))

    def grow(self) -> Slot | None:
        """With ``workers = 0`` (one per unit): a new worker for a unit that came free, a node that joined;
        one at a time, and only while no worker waits for a restart (that one takes the unit first). The
        unit must be seen free twice in a row: the cluster's view of what is held lags behind by a moment."""
        if self.settings.workers or any(s.waiting and not s.killed for s in self.slots):
            return None
        try:
            self._free_seen = self._free_seen + 1 if self.free_units() >= 1 else 0
        except (ray_errors.RayError, OSError):
            self._free_seen = 0
        if self._free_seen < 2:
            return None
        self._free_seen = 0
        log.info("a free unit of %r in the cluster: starting another worker", self.settings.resource)
        return self.add()

    def refresh(self, slot: Slot, timeout: float = DESCRIBE_TIMEOUT_S) -> dict[str, Any]:
        """Ask a worker what it holds now (one removed but idle on its node too); its last answer when it
        does not answer in time or is (re)starting."""
        if not slot.killed and not slot.waiting:
            self._describe(slot, timeout)
        return slot.last

    def _describe(self, slot: Slot, timeout: float) -> None:
        try:
            slot.last = ray.get(slot.actor.describe.remote(), timeout=timeout)
            slot.node = slot.last.get("host", slot.node)
        except ray_errors.RayError:
            pass

    def _admit(self, slot: Slot, reason: str) -> None:
        """The worker's weight check answered: in the pool when it passed, else removed with the reason.
        It is described first (where it runs, also for a removed one: on_dead_node), so no worker is in
        the pool, or in `dermis status`, without its node."""
        self._describe(slot, FIRST_DESCRIBE_S)
        slot.waiting = ""
        if reason:
            self.remove(slot, f"its models failed to load: {reason}")

    def await_ready(self, slot: Slot) -> bool:
        """Wait up to ``READY_POLL_S`` for a starting or restarting worker: True once it is in the pool
        (or removed: its weight check failed there, or its actor is gone for good)."""
        try:
            reason = str(ray.get(slot.actor.preflight.remote(self._recipes), timeout=READY_POLL_S))
        except ray_errors.GetTimeoutError:  # no node with a free unit yet: Ray keeps the restart pending
            return False
        except ray_errors.RayError:  # the call reached it as it died or restarted: look again shortly
            time.sleep(READY_POLL_S)
            return False
        self._admit(slot, reason)
        if slot.alive:
            log.warning("cluster worker %s is back in the pool on %s", slot.name, slot.node)
        return True

    def restarting(self, slot: Slot, reason: str) -> None:
        """Its node died: out of the pool until Ray has started it again elsewhere (``await_ready``)."""
        slot.waiting = f"restarting: {reason}; Ray starts it again when a node with a free unit of " \
                       f"{self.settings.resource!r} joins the cluster"
        log.warning("cluster worker %s (%s) is restarting: %s", slot.name, slot.node or "?", reason)

    def remove(self, slot: Slot, reason: str, *, kill: bool = False) -> None:
        """Out of the pool for good. Its actor stays, idle, holding its unit (so Ray places nothing new on
        a node whose models are broken), unless ``kill``."""
        with self._lock:
            if slot.removed:
                return
            slot.removed = reason
        log.warning("cluster worker %s (%s) leaves the pool: %s", slot.name, slot.node or "?", reason)
        if kill:
            self.kill(slot)

    def readmit(self, slot: Slot) -> None:
        """Back into the pool: it was removed for a load failure that turned out not to be its node's."""
        with self._lock:
            if slot.killed or not slot.removed:
                return
            slot.removed = ""
        log.warning("cluster worker %s (%s) is back in the pool", slot.name, slot.node or "?")

    def kill(self, slot: Slot) -> None:
        """Its actor gone for good, without a restart (also a removed worker whose node died: Ray would
        restart it, idle, on a unit another worker could use)."""
        slot.killed = True
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # its node is gone already
            pass

    def on_dead_node(self) -> list[Slot]:
        """Workers in the pool, or removed ones still holding their unit, whose node the cluster has declared
        dead. Ray restarts such an actor once a node has a free unit; until then a call to it fails
        (ActorUnavailableError), so a job sent there would count a retry without having run."""
        try:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        except (ray_errors.RayError, OSError):  # the head does not answer: the workers' calls will say more
            return []
        return [s for s in self.slots if not s.killed and not s.waiting and s.last.get("node")
                and s.last["node"] not in alive]

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.alive]

    def shutdown(self) -> None:
        for slot in self.slots:
            self.kill(slot)
        if self._owns_ray:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail within ``CONNECT_TIMEOUT_S`` when nothing answers at host:port (ray.init would retry for a
    minute or more). "auto" is first resolved as Ray resolves it (RAY_ADDRESS, else the address of the
    last cluster started on this machine, which may be stale); with none found it is left to Ray, which
    says at once that no cluster runs."""
    resolved = _auto_address() if address == "auto" else address
    host, sep, port = resolved.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        if resolved == address:
            raise
        raise OSError(f"{address} is {resolved} here: {e}") from None


def _auto_address() -> str:
    """Ray's own lookup of "auto" (a private function: when a Ray release moves it, "" leaves the
    address to ray.init as before)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto") or ""
    except Exception:  # any failure here only skips the early check
        return ""
