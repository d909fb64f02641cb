"""The driver's side of the cluster: connect to Ray, start one ``DermisWorker`` per GPU, keep the pool.

Each worker asks for one unit of the configured resource (``GPU`` by default; a custom one such as
``dermis_worker`` in the tests), so Ray places at most one worker per GPU and sets its
CUDA_VISIBLE_DEVICES. A worker whose node lacks the preset's weights (or whose actor does not start)
leaves the pool with the reason, which `dermis status` shows.
"""

from __future__ import annotations

import logging
import threading
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
    removed: str = ""  # why it left the pool ("" while in it)
    job: str = ""  # the job it runs now
    last: dict[str, Any] = field(default_factory=dict)  # its last describe()

    @property
    def alive(self) -> bool:
        return not self.removed


class WorkerPool:
    def __init__(self, settings: ClusterSettings, config: pipeline.Config, device: str | None = None,
                 budget: int | None = None) -> None:
        self.settings = settings
        self.slots: list[Slot] = []
        self._lock = threading.Lock()
        self._config, self._device, self._budget = config, device, budget
        self._owns_ray = False  # this pool connected (another pool in the process may share it)

    def start(self, recipes: list[pipeline.Recipe]) -> None:
        """Connect, start the workers and check their weights for ``recipes`` (bounded in time)."""
        s = self.settings
        try:
            if not ray.is_initialized():
                self._owns_ray = True
                ray.init(address=s.address, namespace="dermis", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            offered = int(ray.cluster_resources().get(s.resource, 0))
        except (ConnectionError, RuntimeError, ray_errors.RaySystemError) as e:
            raise ClusterUnavailable(f"cannot connect to the Ray cluster at {s.address} ({e}); start it with "
                                     "`ray start --head` (docs/cluster.md) or check the address.") from None
        count = s.workers or offered
        if count <= 0:
            raise ClusterUnavailable(f"the Ray cluster at {s.address} offers no {s.resource!r} resource, so no "
                                     "worker can start; give the nodes GPUs or set [cluster] resource.")
        need = {"num_gpus": 1} if s.resource == "GPU" else {"resources": {s.resource: 1}}
        for i in range(count):
            actor = RemoteWorker.options(num_cpus=0, max_concurrency=4, max_restarts=0, **need).remote(
                self._config, self._device, self._budget)
            self.slots.append(Slot(f"worker-{i + 1}", actor))
        checks = {slot.name: slot.actor.preflight.remote(recipes) for slot in self.slots}
        for slot in self.slots:
            try:
                reason = str(ray.get(checks[slot.name], timeout=s.start_timeout_s))
            except ray_errors.GetTimeoutError:
                reason = (f"did not start within {s.start_timeout_s:g} s (does the cluster have {count} free "
                          f"unit(s) of {s.resource!r}?)")
            except ray_errors.RayError as e:
                reason = f"failed to start: {str(e).splitlines()[0]}"
            if reason:
                self.remove(slot, f"its models failed to load: {reason}" if "weight" in reason.lower() or
                            "model" in reason.lower() else reason)
            else:
                self.refresh(slot)
        if not any(s.alive for s in self.slots):
            raise ClusterUnavailable("no cluster worker could start: " +
                                     "; ".join(f"{s.name}: {s.removed}" for s in self.slots))

    def refresh(self, slot: Slot) -> dict[str, Any]:
        """Ask a live worker what it holds now; its last answer when it does not answer in time."""
        if slot.alive:
            try:
                slot.last = ray.get(slot.actor.describe.remote(), timeout=DESCRIBE_TIMEOUT_S)
                slot.node = slot.last.get("host", slot.node)
            except ray_errors.RayError:
                pass
        return slot.last

    def remove(self, slot: Slot, reason: str) -> None:
        with self._lock:
            if slot.removed:
                return
            slot.removed = reason
        log.warning("cluster worker %s (%s) leaves the pool: %s", slot.name, slot.node or "?", reason)
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # its node is gone already
            pass

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.alive]

    def shutdown(self) -> None:
        for slot in self.slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        if self._owns_ray:
            ray.shutdown()
