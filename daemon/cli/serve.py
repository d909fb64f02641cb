"""`dermis serve`: run the daemon that owns the device and serves the plugins, the CLI and the watch folder.

Options come from the command line, then the config's ``[daemon]`` table:

    [daemon]
    listen = "unix:/run/user/1000/dermis/daemon.sock"   # or "127.0.0.1:50151"
    vram_budget_gb = 20        # resident models; default: the card minus a working reserve
    max_queue = 32
    result_ttl_s = 900
    grace_s = 30               # on SIGTERM, the running job gets this long to finish
    max_watches = 40           # open Watch streams (the rest of the threads serve Cancel and the like)
    max_uploads = 16           # uploads receiving at once
    upload_stall_s = 30        # an upload that sends nothing this long is dropped
    shared_memory = true       # offer shared-memory transfers to clients on this machine (Linux)

Jobs run on a Ray cluster's GPUs with ``--ray ADDRESS`` or a ``[cluster]`` table (docs/cluster.md;
daemon/cluster/settings.py); without either Ray is never imported.

Watch folders the daemon serves are ``[[watch]]`` tables in the same config (docs/watch.md).

SIGTERM or Ctrl-C stop it gracefully: waiting jobs are cancelled, the running one finishes within the
grace time (or is cancelled), and every watching client gets its job's last event.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import sys
import threading
from typing import Any

import pipeline
from pipeline import InvalidParameter
from proto.discovery import default_runtime_file

from ..cluster.settings import from_config

NAME = "serve"
HELP = "run the daemon (the GPU owner the plugins, `upscale --server` and the watch folder talk to)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", metavar="ADDR",
                   help="unix:/path/to/socket or 127.0.0.1:PORT (default: a Unix socket in the user's "
                        "runtime folder; 127.0.0.1:50151 on Windows)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow --listen on an address other machines can reach (token only, no TLS)")
    p.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--vram-budget", type=float, metavar="GIB",
                   help="GiB of device memory resident models may use (default: the card minus a reserve)")
    p.add_argument("--max-queue", type=int, metavar="N", help="jobs that may wait at once (default 32)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run jobs on the Ray cluster at ADDRESS (host:port of its head, or auto); one worker per "
                        "GPU it offers (docs/cluster.md; needs the dermis[cluster] extra)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: start N workers instead of one per GPU the cluster offers")
    p.add_argument("--grace", type=float, metavar="S",
                   help="seconds the running job gets to finish on SIGTERM before it is cancelled (default 30)")


def _option(args: argparse.Namespace, name: str, table: dict[str, Any], key: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return value if value is not None else table.get(key, default)


def server_config(args: argparse.Namespace) -> Any:
    from ..server.start import ServerConfig

    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    table = config.section("daemon")
    if not isinstance(table, dict):
        raise InvalidParameter("the config's [daemon] section must be a table.")
    budget = _option(args, "vram_budget", table, "vram_budget_gb", None)
    cluster = from_config(config.section("cluster"), getattr(args, "ray", None), getattr(args, "workers", None))
    if cluster is not None:
        require_ray()
    return ServerConfig(
        pipeline=config,
        listen=_option(args, "listen", table, "listen", None),
        allow_remote=bool(args.allow_remote or table.get("allow_remote", False)),
        runtime_file=default_runtime_file(),
        device=args.device,
        vram_budget=int(float(budget) * 2**30) if budget is not None else None,
        max_queue=int(_option(args, "max_queue", table, "max_queue", 32)),
        result_ttl=float(table.get("result_ttl_s", 900.0)),
        shutdown_grace=float(_option(args, "grace", table, "grace_s", 30.0)),
        max_watches=int(table.get("max_watches", ServerConfig.max_watches)),
        max_uploads=int(table.get("max_uploads", ServerConfig.max_uploads)),
        upload_stall_s=float(table.get("upload_stall_s", ServerConfig.upload_stall_s)),
        shared_memory=bool(table.get("shared_memory", ServerConfig.shared_memory)),
        cluster=cluster,
        preload=tuple(str(p) for p in config.section("cluster").get("preload", ())) if cluster else (),
    )


def require_ray() -> None:
    """--ray (serve or watch) without the optional extra: say how to get it, before anything starts."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise InvalidParameter("--ray needs Ray, which is not installed: pip install 'dermis[cluster]'.")


def _fewer_malloc_arenas() -> None:
    """glibc gives threads that allocate their own arenas (up to 8 per core), and an arena keeps what
    was freed in it: with 72 handler threads passing 32 MiB uploads around, the daemon grew by ~90 MiB
    over 90 jobs that never came back (~50 MiB with two arenas; tests/test_daemon_defects.py, D1).
    Two arenas are plenty for a process that runs one job at a time."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX; absent from musl (AttributeError)
        except (OSError, AttributeError):
            pass


def missing_notice(config: pipeline.Config) -> str:
    """One line at start when the default preset lacks files: which, and how to get them."""
    from pipeline import fetch
    from pipeline.models import WeightLocator

    lacking = [r.role for r in fetch.status([pipeline.DEFAULT_PRESET], WeightLocator(config))
               if r.missing and r.required]
    if not lacking:
        return ""
    return (f"preset {pipeline.DEFAULT_PRESET} lacks {len(lacking)} model file(s) ({', '.join(lacking)}): "
            f"`dermis models get {pipeline.DEFAULT_PRESET}` downloads them, or 'Download missing models…' "
            "in the Krita docker / GIMP plug-in.")


def run(args: argparse.Namespace) -> int:
    from ..server.start import start_server

    _fewer_malloc_arenas()
    logging.getLogger("dermis").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    config = server_config(args)
    _server, daemon = start_server(config)
    for warning in daemon.warnings:
        print(f"\n{'!' * 100}\ndermis: {warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    notice = missing_notice(config.pipeline)
    if notice:
        print(f"dermis: {notice}", file=sys.stderr, flush=True)
    budget = daemon.residency.budget
    workers = getattr(daemon.executor, "pool", None)
    if workers is not None:
        print(f"dermis: Ray cluster {config.cluster.address if config.cluster else ''}: "
              f"{len(workers.live())} of {len(workers.slots)} worker(s) in the pool", file=sys.stderr, flush=True)
    print(f"dermis: serving on {daemon.address} (device {daemon.device}, "
          f"model budget {f'{budget / 2**30:.1f} GiB' if budget else 'unlimited'}); token in "
          f"{daemon.token_file}; stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    print(f"dermis: shutting down (the running job gets {config.shutdown_grace:g} s to finish)",
          file=sys.stderr, flush=True)
    daemon.stop()
    print("dermis: stopped", file=sys.stderr, flush=True)
    return 0
