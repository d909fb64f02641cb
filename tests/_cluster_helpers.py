"""A real multi-node Ray cluster on loopback for the cluster tests: a head node and worker nodes, each
offering one unit of the custom resource ``dermis_worker`` (a GPU stands in on CPU machines), and a
daemon driving it. Starting a cluster takes ~20 s, so test modules share one (module-scoped fixtures)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.cluster.settings import ClusterSettings
from daemon.server.start import ServerConfig, start_server

from ._daemon_helpers import TOKEN

RESOURCE = "dermis_worker"
LOOPBACK = "127.0.0.1"  # Ray would otherwise pick the machine's outward address


def loopback_only() -> None:
    """Keep Ray on 127.0.0.1. ray.init turns a 127.0.0.1 address into "the machine's address" unless
    clusters are switched off for this platform; the raylets and workers inherit the variable."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as constants

    constants.ENABLE_RAY_CLUSTER = False  # read at import; this process may have imported Ray already


class LoopbackCluster:
    def __init__(self, workers: int = 2) -> None:
        loopback_only()
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": LOOPBACK, "include_dashboard": False,
            # a killed node is declared dead after ~3 s instead of Ray's default ~15-30 s
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
        self.nodes: list[Any] = []
        for _ in range(workers):
            self.add_worker_node()
        self.cluster.wait_for_nodes(timeout=120)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_worker_node(self, env: dict[str, str] | None = None, resource: str = RESOURCE) -> Any:
        """One more node with one unit of the worker resource (another name keeps a test's nodes to its own
        daemon); ``env`` is its raylet's environment (its workers inherit it), as `ray start` on a machine
        of its own would pass its shell's."""
        node = self.cluster.add_node(num_cpus=1, resources={resource: 1}, node_ip_address=LOOPBACK,
                                     **({"env_vars": env} if env else {}))
        self.nodes.append(node)
        return node

    def kill_node(self, node: Any) -> None:
        """Kill a worker node's raylet and everything on it (as a machine that dies)."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


def local_run(preset: str, arr: Any, seed: int, **kw: Any) -> Any:
    """The same job run by pipeline.run in this process (what a cluster result must equal), as an array."""
    import pipeline
    from pipeline import images

    r = pipeline.run(pipeline.build(preset), images.from_array(arr), seed=seed, device="cpu", **kw)
    return images.to_array(r.image)


def journal_run_intervals(journal: Path) -> list[tuple[str, float, float]]:
    """Per input of a watch folder's journal: (name, when its last run started, when it was recorded
    done), from the journal's own timestamps."""
    import sqlite3

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT e.name, e.time, e.message, i.state FROM events e JOIN inputs i "
                          "ON i.id = e.input_id ORDER BY e.id").fetchall()
    finally:
        db.close()
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for name, t, message, state in rows:
        if message.startswith("running (attempt"):
            starts[name] = t
        elif state == "done":  # its last event is the one that recorded it done (result published)
            ends[name] = t
    return [(n, starts[n], ends[n]) for n in sorted(ends)]


def overlapping(intervals: list[tuple[str, float, float]]) -> list[tuple[str, str]]:
    """Pairs of runs that were under way at the same moment."""
    return [(a[0], b[0]) for i, a in enumerate(intervals) for b in intervals[i + 1:]
            if max(a[1], b[1]) < min(a[2], b[2])]


@contextmanager
def cluster_daemon(address: str, preload: tuple[str, ...] = (), config: Any = None, **kw: Any) -> Iterator[Any]:
    """A daemon (real gRPC server and queue) whose jobs run on the cluster's workers; ``config`` is its
    pipeline.Config (sent to the workers), ``kw`` its ClusterSettings."""
    import pipeline

    folder = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))
    settings = ClusterSettings(address=address, **{"resource": RESOURCE, **kw})
    daemon = start_server(ServerConfig(listen=f"unix:{folder / 'd.sock'}", token=TOKEN, device="cpu",
                                       cluster=settings, preload=preload,
                                       pipeline=config if config is not None else pipeline.Config()))[1]
    try:
        yield daemon
    finally:
        daemon.stop(grace=5.0)
        shutil.rmtree(folder, ignore_errors=True)
