"""Benchmark: jobs through the daemon on a Ray cluster with 1 and 2 worker nodes, against the local
executor; the per-job overhead the cluster adds.

    .venv/bin/python bench/bench_cluster.py [--jobs 40] [--size 512]

Starts a loopback Ray cluster on this machine (a head and two worker nodes, each offering one unit of
``dermis_worker``: tests/_cluster_helpers.py), then three daemons in this process one after the
other: the local executor, the cluster with ``workers=1`` and with ``workers=2``. Each gets two warm-up
jobs, then ``--jobs`` lite jobs on random ``--size``² RGB images, all submitted at once (batch
priority, as a hot folder would) by 4 client threads; wall time from the first submit to the last
result. Per-job overhead = (wall per job with 1 worker) - (wall per job locally).

On one CPU machine the two worker nodes share the same cores, so 2 workers cannot give 2x here; on
GPU machines each worker has its own GPU (docs/cluster.md, "Throughput to expect").

Measured once (2-core AMD EPYC VM, CPU, shared with 4 other jobs, load average ~9; 40 jobs, 512² ->
1024², one run each, so differences of ~10 % are noise):

    local executor         40 jobs in 19.12 s   478.0 ms/job   2.09 jobs/s
    cluster, 1 worker      40 jobs in 20.32 s   508.0 ms/job   1.97 jobs/s
    cluster, 2 workers     40 jobs in 14.57 s   364.2 ms/job   2.75 jobs/s
    per-job overhead of the cluster (1 worker vs local): 30 ms/job; 2 workers vs 1: 1.39x
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from daemon.cluster.settings import ClusterSettings  # noqa: E402
from daemon.server.start import ServerConfig, start_server  # noqa: E402
from proto.client import Client, JobRequest  # noqa: E402
from tests._cluster_helpers import RESOURCE, LoopbackCluster  # noqa: E402

TOKEN = "bench-token-" + "x" * 20


def _request(seed: int, size: int) -> JobRequest:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return JobRequest(pixels=arr.tobytes(), width=size, height=size, channels=3, bit_depth=8, preset="lite",
                      seed=seed, priority="batch", client_name="bench")


def _batch(address: str, jobs: int, size: int, clients: int = 4) -> float:
    """Seconds from the first submit to the last result of ``jobs`` lite jobs."""
    requests = [_request(i, size) for i in range(jobs)]
    errors: list[BaseException] = []

    def client_thread(mine: list[JobRequest]) -> None:
        try:
            with Client(address, TOKEN, timeout=600.0) as c:
                ids = [c.submit(r) for r in mine]
                for job_id in ids:
                    c.fetch_result(job_id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(requests[i::clients],)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def _measure(label: str, folder: Path, jobs: int, size: int, cluster: ClusterSettings | None) -> float:
    sock = folder / f"d{cluster.workers if cluster else 0}.sock"  # no comma: gRPC reads it as a list
    daemon = start_server(ServerConfig(listen=f"unix:{sock}", token=TOKEN, device="cpu",
                                       max_queue=jobs + 8, cluster=cluster))[1]
    try:
        _batch(daemon.address, 2, size, clients=2)  # warm-up: imports, first allocations on each worker
        wall = _batch(daemon.address, jobs, size)
    finally:
        daemon.stop(grace=5.0)
    print(f"{label:<22} {jobs} jobs in {wall:7.2f} s  {wall / jobs * 1000:8.1f} ms/job  "
          f"{jobs / wall:6.2f} jobs/s", flush=True)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    import os
    import tempfile

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.jobs} lite jobs on {args.size}² RGB8", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    t0 = time.perf_counter()
    cluster = LoopbackCluster(workers=2)
    print(f"loopback cluster (head + 2 worker nodes) up in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        local = _measure("local executor", folder, args.jobs, args.size, None)
        one = _measure("cluster, 1 worker", folder, args.jobs, args.size,
                       ClusterSettings(cluster.address, resource=RESOURCE, workers=1))
        two = _measure("cluster, 2 workers", folder, args.jobs, args.size,
                       ClusterSettings(cluster.address, resource=RESOURCE, workers=2))
    finally:
        cluster.shutdown()
    print(f"per-job overhead of the cluster (1 worker vs local): {(one - local) / args.jobs * 1000:.1f} ms/job")
    print(f"2 workers vs 1: {one / two:.2f}x throughput (both nodes share this machine's cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
