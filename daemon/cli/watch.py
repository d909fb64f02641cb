"""`dermis watch IN_DIR --out OUT_DIR`: a hot folder, processed here until Ctrl-C (or SIGTERM).

With ``--ray ADDRESS`` the files run on a Ray cluster's workers, one per worker at once, through the same
queue and ``ClusterExecutor`` as `dermis serve --ray`; the journal stays in this process (docs/cluster.md).

`dermis watch --status IN_DIR` prints what the folder's journal says, whether or not a watcher runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pipeline
from pipeline import InvalidParameter

from ..watch.files import FolderLock
from ..watch.folder import STATE_DIR, Options, WatchFolder, find_journal
from ..watch.journal import Journal
from ..watch.runner import JobRunner, LocalRunner
from ..watch.scan import is_input_name
from ..watch.service import QueueRunner
from ..watch.settings import Settings, base_settings

NAME = "watch"
HELP = "process every image dropped into a folder (a hot folder)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN_DIR", help="the folder to watch")
    p.add_argument("--out", metavar="OUT_DIR", help="where results go (required unless --status)")
    p.add_argument("--preset", default=pipeline.DEFAULT_PRESET,
                   help=f"preset for files without settings (default {pipeline.DEFAULT_PRESET})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting for every file, as in `dermis upscale --set`")
    p.add_argument("--polling", action="store_true",
                   help="poll the folder instead of using file-system events (network shares)")
    p.add_argument("--status", action="store_true", help="show the folder's counts and recent events")
    p.add_argument("--once", action="store_true",
                   help="process what is in the folder, then exit (instead of watching forever)")
    p.add_argument("--stable", type=float, default=None, metavar="SECONDS",
                   help="how long size and time stamp must stay unchanged (default 2, 10 with --polling)")
    p.add_argument("--rescan", type=float, default=30.0, metavar="SECONDS",
                   help="full rescan interval; events are only hints (default 30)")
    p.add_argument("--give-up", type=float, default=30.0, metavar="SECONDS",
                   help="how long a complete-looking file that does not decode may still change (default 30)")
    p.add_argument("--attempts", type=int, default=3, help="runs per file before it is failed (default 3)")
    p.add_argument("--journal", metavar="FILE",
                   help="journal location (default IN_DIR/.dermis/journal.sqlite; "
                        "with --polling the user state folder)")
    p.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the files on the Ray cluster at ADDRESS (host:port of its head, or auto), one per "
                        "worker at once (docs/cluster.md; needs the dermis[cluster] extra)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: start N workers instead of one per GPU the cluster offers")


def run(args: argparse.Namespace) -> int:
    inbox = Path(args.input)
    if args.status:
        return _status(inbox, Path(args.journal) if args.journal else None)
    if not args.out:
        raise InvalidParameter("dermis watch needs --out OUT_DIR (where results go).")
    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    options = Options(
        stable_s=args.stable if args.stable is not None else (10.0 if args.polling else 2.0),
        give_up_s=args.give_up, rescan_s=args.rescan, max_attempts=max(1, args.attempts),
        polling=args.polling)
    base = base_settings(args.preset, args.overrides)
    cluster = None
    if args.ray:
        runner, cluster = _cluster_runner(args, config, base)
    elif args.workers is not None:
        raise InvalidParameter("--workers needs --ray ADDRESS (the cluster to start the workers on).")
    else:
        runner = LocalRunner(config, device=args.device)
        runner.preflight(base)  # missing weights: say so now rather than fail every file
    try:
        return _serve(args, config, base, runner, options, inbox)
    finally:
        if cluster is not None:
            cluster.stop(grace=5.0)


def _cluster_runner(args: argparse.Namespace, config: pipeline.Config, base: Settings) -> tuple[QueueRunner, Any]:
    """The folder's jobs go through a queue that the cluster's workers run (the daemon's ClusterExecutor,
    started here); the folder keeps one job per live worker in flight. Checks the preset's weights on
    every worker first."""
    from ..cluster.executor import connect
    from ..cluster.settings import from_config
    from ..jobs.queue import JobQueue
    from .serve import require_ray

    require_ray()
    settings = from_config(config.section("cluster"), args.ray, args.workers)
    assert settings is not None, "--ray gives the address"
    queue = JobQueue()
    executor = connect(settings, queue, config, [base.recipe()], device=args.device)
    executor.start()
    return QueueRunner(queue, config, lambda: executor.capacity), executor


def _serve(args: argparse.Namespace, config: pipeline.Config, base: Settings, runner: JobRunner,
           options: Options, inbox: Path) -> int:
    folder = WatchFolder(inbox, args.out, base, runner, options=options,
                         journal=Path(args.journal) if args.journal else None,
                         max_pixels=config.max_pixels)
    # Say what happens to each file even without -v.
    logging.getLogger("dermis.watch").setLevel(logging.INFO)
    previous = _stop_on_signals(folder)
    print(f"dermis: watching {folder.inbox} -> {folder.out} (preset {args.preset}); "
          f"Ctrl-C stops, unfinished files resume next time", file=sys.stderr)
    try:
        folder.serve(once=args.once)
    except KeyboardInterrupt:
        folder.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        c = folder.counts()
        folder.close()
    print("dermis: " + _counts_line(c), file=sys.stderr)
    return 0


def _stop_on_signals(folder: WatchFolder) -> dict:
    """SIGTERM/SIGHUP and a first Ctrl-C stop cleanly at the next step of the running job, which stays
    claimed for the next start (a KeyboardInterrupt could land between two file operations and would
    count as a crashed attempt). A second Ctrl-C quits at once. Returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals only reach the main thread
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        if signum == signal.SIGINT and stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        print("dermis: stopping after the current step (Ctrl-C again to quit at once)", file=sys.stderr)
        folder.stop()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, on_signal)
    return previous


def _status(inbox: Path, journal: Path | None) -> int:
    inbox = inbox.resolve()
    if not inbox.is_dir():
        raise InvalidParameter(f"watch folder {inbox} does not exist.")
    waiting = sum(1 for p in inbox.iterdir() if p.is_file() and is_input_name(p.name))
    lock = FolderLock(inbox / STATE_DIR / "lock")
    running = f"running (pid {lock.holder()})" if lock.is_held_elsewhere() else "not running"
    path = journal or find_journal(inbox)
    print(f"folder:  {inbox}")
    print(f"watcher: {running}")
    if path is None or not path.is_file():
        print(f"journal: none yet (the folder was never watched)\npending: {waiting}")
        return 0
    j = Journal(path)
    try:
        c = j.counts()
        c = {"pending": waiting + c.pop("queued"), **c}
        print(f"journal: {path}")
        for k, v in c.items():
            print(f"{k + ':':8} {v}")
        events = j.recent_events(10)
    finally:
        j.close()
    if events:
        print("recent:")
        for t, name, msg in events:
            print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t))} {name or '-'}: {msg}")
    return 0


def _counts_line(c: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in c.items())
