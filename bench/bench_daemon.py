"""Benchmark: what the daemon costs on top of the pipeline, and how fast pixels cross the socket.

    .venv/bin/python bench/bench_daemon.py [--repeat 5]

Starts `dermis serve` as a real separate process (private state/config folders, CPU) once on a Unix
socket and once on 127.0.0.1, and measures

1. round-trip overhead: the lite preset on the 512x512 example portrait (-> 1024x1024) through the
   daemon (upload, queue, run, download) against a direct ``pipeline.run`` here; median of N; ratio;
2. transfer: upload (Client.submit: CRC-32 + 1 MiB chunks + the daemon's checks) and download (a
   ``watch`` resumed just before Done: the result's chunks + CRC-32 + reassembly) of 2048² and 4096²
   16-bit RGBA images; an identity preset (resample at scale 1) keeps the processing out of it.
   Both ways: streamed over the socket, and through a shared-memory file (proto/shm.py; the daemon
   offers it to clients on its machine). Target: upload + download <= 0.5 s for 4096².
3. load: ``--clients`` clients (16) each submitting lite jobs on a 256x256 image one after the other
   for ``--load-s`` seconds (60), as the daemon was probed: jobs/s, latency p50/p95 (submit to
   result), refused jobs, and the daemon's resident memory before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline import images  # noqa: E402
from proto.client import Client, ClientError, EventKind, JobRequest  # noqa: E402
from proto.discovery import read_runtime_file  # noqa: E402

IDENTITY = """name = "bench-identity"
scale = 1.0
[[stage]]
id = "resample"
kind = "resample"
"""


def start_daemon(listen: str, home: Path) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"),
               DERMIS_DEVICE="cpu", HF_HUB_OFFLINE="1")
    env.pop("XDG_RUNTIME_DIR", None)
    runtime = home / "state" / "dermis" / "daemon.json"
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "serve", "--listen", listen, "--grace", "1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = read_runtime_file(runtime)
        if info is not None and info.get("pid") == proc.pid:
            info["token"] = Path(info["token_file"]).read_text().strip()
            return proc, info
        if proc.poll() is not None:
            sys.exit(f"dermis serve exited with {proc.returncode}")
        time.sleep(0.1)
    proc.kill()
    sys.exit("dermis serve did not start within 120 s")


def median(times: list[float]) -> float:
    return statistics.median(times)


def overhead(c: Client, repeat: int) -> None:
    portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png")
    raw = images.to_array(portrait)
    recipe = pipeline.build("lite")
    job = JobRequest(raw.tobytes(), 512, 512, 3, preset="lite", seed=1, output="full", client_name="bench")
    direct, daemon, extra = [], [], []
    pipeline.run(recipe, portrait, seed=1, device="cpu")  # warm-up both sides
    c.run(job)
    for _ in range(repeat):
        t0 = time.perf_counter()
        pipeline.run(recipe, portrait, seed=1, device="cpu")
        direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = c.run(job)
        daemon.append(time.perf_counter() - t0)
        # what the daemon adds to its own stage time: upload, queue, events, conversion, download
        extra.append(daemon[-1] - sum(result.stage_seconds.values()))
    d, r = median(direct), median(daemon)
    print(f"  lite 512->1024: direct pipeline.run {d * 1000:.0f} ms, through the daemon {r * 1000:.0f} ms "
          f"(median of {repeat}): ratio {r / d:.2f}; the daemon's own share {median(extra) * 1000:.0f} ms "
          "(round trip minus the stages' time in the daemon)")


def transfer(c: Client, side: int, repeat: int, label: str) -> None:
    arr = np.random.default_rng(side).integers(0, 65536, (side, side, 4), dtype=np.uint16)
    pixels = arr.astype("<u2").tobytes()
    ups, downs = [], []
    for i in range(repeat + 1):  # the first round warms up
        job = JobRequest(pixels, side, side, 4, bit_depth=16, preset="bench-identity", seed=1, output="full")
        t0 = time.perf_counter()
        job_id = c.submit(job)
        up = time.perf_counter() - t0
        done = next(e for e in c.watch(job_id) if e.kind is EventKind.done)
        assert done.result.pixels == pixels, "the identity preset must return the input"
        t0 = time.perf_counter()
        again = next(e for e in c.watch(job_id, after_seq=done.seq - 1) if e.kind is EventKind.done)
        down = time.perf_counter() - t0
        assert len(again.result.pixels) == len(pixels)
        if i:
            ups.append(up)
            downs.append(down)
    u, d = median(ups), median(downs)
    mib = len(pixels) / 2**20
    verdict = "" if side != 4096 else ("  (target <= 0.5 s: met)" if u + d <= 0.5 else "  (target <= 0.5 s: MISSED)")
    print(f"  {side}x{side} RGBA16 ({mib:.0f} MiB), {label}: upload {u * 1000:.0f} ms, download "
          f"{d * 1000:.0f} ms, total {(u + d) * 1000:.0f} ms ({2 * mib / (u + d):.0f} MiB/s){verdict}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(info: dict, pid: int, clients: int, seconds: float) -> None:
    """``clients`` threads, each its own Client, submitting lite 256² jobs back to back."""
    portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png")
    small = images.to_array(images.resize(portrait, (256, 256)))
    job = JobRequest(small.tobytes(), 256, 256, 3, preset="lite", seed=1, output="full", client_name="bench")
    with Client(info["address"], info["token"], timeout=60) as c:
        c.run(job)  # warm-up
    before = rss_mib(pid)
    latencies: list[float] = []
    refused: list[str] = []
    stop = time.monotonic() + seconds

    def one() -> None:
        with Client(info["address"], info["token"], timeout=60) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    c.run(job)
                except ClientError as e:  # queue full and the like: counted, and the client goes on
                    refused.append(e.code)
                    time.sleep(0.2)
                    continue
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = rss_mib(pid)
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [float("nan")] * 19
    print(f"  {clients} clients x {seconds:g} s of lite 256x256 jobs: {len(latencies)} done, "
          f"{len(latencies) / wall:.2f} jobs/s, latency p50 {statistics.median(latencies):.2f} s, p95 {q[18]:.2f} s; "
          f"{len(refused)} refused ({', '.join(sorted(set(refused))) or 'none'}); daemon RSS {before:.0f} MiB "
          f"before, {after:.0f} MiB after")
    kept = min(len(latencies) + 1, 500) * 512 * 512 * 3 / 2**20  # lite doubles 256² to 512² RGB8
    print(f"    (by design it still holds the results of the last {min(len(latencies) + 1, 500)} jobs for "
          f"re-fetching, {kept:.0f} MiB: finished jobs are remembered up to 500, results for result_ttl_s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clients", type=int, default=16, help="clients of the load run (default 16)")
    ap.add_argument("--load-s", type=float, default=60.0, help="seconds of the load run (default 60; 0 = skip)")
    args = ap.parse_args()
    import google.protobuf
    import grpc

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, grpcio {grpc.__version__}, protobuf "
          f"{google.protobuf.__version__} ({_protobuf_backend()}); daemon in its own process, on the CPU")
    block = os.urandom(128 << 20)
    dest = bytearray(len(block))
    copies = []
    for _ in range(3):
        t0 = time.perf_counter()
        dest[:] = block
        copies.append(time.perf_counter() - t0)
    print(f"reference: one in-memory copy of 128 MiB takes {median(copies) * 1000:.0f} ms here "
          "(a transfer needs several: client, kernel, server)")
    del block, dest
    with tempfile.TemporaryDirectory(prefix="dermis-bench-", dir="/tmp") as tmp:
        home = Path(tmp)
        (home / "config" / "dermis" / "presets").mkdir(parents=True)
        (home / "config" / "dermis" / "presets" / "identity.toml").write_text(IDENTITY)
        for label, listen in (("Unix socket", f"unix:{home}/d.sock"), ("TCP 127.0.0.1", "127.0.0.1:0")):
            proc, info = start_daemon(listen, home)
            try:
                print(f"{label} ({info['address']}):")
                with Client(info["address"], info["token"], timeout=60, shared_memory=False) as c:
                    overhead(c, args.repeat)
                if args.load_s > 0 and label == "Unix socket":  # before the big transfers fill its memory
                    load(info, proc.pid, args.clients, args.load_s)
                with Client(info["address"], info["token"], timeout=60, shared_memory=False) as c:
                    for side in (2048, 4096):
                        transfer(c, side, max(2, args.repeat // 2), "streamed")
                with Client(info["address"], info["token"], timeout=60) as c:
                    if c.info().shared_memory_dir:
                        for side in (2048, 4096):
                            transfer(c, side, max(2, args.repeat // 2), "shared memory")
                    else:
                        print("  (no shared-memory transfers offered here)")
            finally:
                proc.terminate()
                proc.wait(60)


def _protobuf_backend() -> str:
    from google.protobuf.internal import api_implementation

    return api_implementation.Type()


if __name__ == "__main__":
    main()
