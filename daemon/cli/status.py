"""`dermis status`: what the running daemon is, has loaded, and is working on."""

from __future__ import annotations

import argparse

from proto.client import Client

NAME = "status"
HELP = "show the running daemon: device and memory, presets and weights, loaded models, the queue"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="ADDR", help="daemon address (default: the one `dermis serve` published)")
    p.add_argument("--all", action="store_true", help="also list finished jobs the daemon remembers")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon (default 5)")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def run(args: argparse.Namespace) -> int:
    # admin: the queue of every client (editors, the watch folder), not only this one's
    with Client(args.server, timeout=args.timeout, admin=True) as client:  # no daemon: ClientError, reported by entry
        info = client.info()
        jobs = client.list_jobs(include_finished=args.all)
        counts = client.job_counts()
        folders = client.watch_folders()
        address = client.address
    print(f"dermis daemon {info.version} (api v{info.api_version}) at {address}")
    memory = f", {_mib(info.vram_free)} free of {_mib(info.vram_total)}" if info.vram_total else ""
    print(f"device: {info.device}{memory}")
    budget = _mib(info.model_budget) if info.model_budget else "no limit"
    loaded = ", ".join(f"{k} ({_mib(n)})" for k, n in info.loaded_models.items()) or "none"
    print(f"models loaded: {loaded}; budget {budget}")
    if info.workers:
        print(f"cluster workers ({sum(1 for w in info.workers if not w.removed)} of {len(info.workers)} in the pool):")
        for w in info.workers:
            mem = f", {_mib(w.vram_free)} free of {_mib(w.vram_total)}" if w.vram_total else ""
            models = ", ".join(f"{k} ({_mib(n)})" for k, n in w.loaded_models.items()) or "none"
            state = f"NOT IN THE POOL, {w.removed}" if w.removed else (f"running {w.job_id}" if w.job_id else "idle")
            print(f"  {w.name} on {w.host or '?'}: {w.device or '?'}{mem}; models {models}; {state}")
    print("presets:")
    for p in info.presets:
        default = " (default)" if p.name == info.default_preset else ""
        stages = ", ".join(s.id for s in p.stages if s.enabled)
        print(f"  {p.name}{default}: scale {p.scale:g}, stages {stages}")
    if info.weights:
        print("weights:")
        for w in info.weights:
            print(f"  {w.key}: {w.status}{' -> ' + w.path if w.path else ''}")
    for line in info.flux_memory:  # the FLUX file the daemon would use and what each memory mode holds
        print(line)
    print(f"queue: {info.queue_length} job(s) queued or running")
    for j in jobs:
        where = f", position {j.position}" if j.state == "queued" else f", {j.fraction:.0%}"
        extra = f" — {j.error_code}: {j.message}" if j.error_code else ""
        print(f"  {j.job_id}  {j.state:<9} {j.preset} ({j.priority}, {j.client_name or '?'}){where}{extra}")
    if counts:
        print("jobs per client (queued/running/done/failed/cancelled):")
        for c in counts:
            print(f"  {c.client_name or '(unnamed)'}: {c.queued}/{c.running}/{c.done}/{c.failed}/{c.cancelled}")
    if folders:
        print("watch folders (pending/running/done/skipped/failed):")
        for f in folders:
            state = f"NOT WATCHED: {f.error}" if f.error else \
                f"{f.pending}/{f.running}/{f.done}/{f.skipped}/{f.failed}"
            print(f"  {f.folder} -> {f.out} ({f.preset}): {state}")
    return 0
