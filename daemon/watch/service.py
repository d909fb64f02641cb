"""Watch folders inside the daemon: each configured folder's jobs go through the daemon's queue.

    [[watch]]
    in = "~/dermis/in"            # the watched folder
    out = "~/dermis/out"          # results
    preset = "supir-srpo"         # default preset for its files (dermis.toml / sidecars may change it)
    set = { "grain.strength" = 0.03 }     # optional, like --set
    polling = false               # true for network shares
    stable_s = 2.0                # optional tuning, as the `dermis watch` options
    rescan_s = 30.0
    give_up_s = 30.0
    attempts = 3
    journal = "..."               # optional journal file

Every folder has its own manager thread (claim, journal, publish, archive: the same WatchFolder as
`dermis watch`); only running a job differs: ``QueueRunner`` submits it at batch priority and waits,
so editor jobs run first and a running folder job yields to them at its next step or tile boundary.
On a Ray cluster (`serve --ray`) a folder keeps one job per live worker in the queue, so every worker
stays busy; the journal on this machine still records each file's one outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pipeline
from pipeline import Cancelled, CancelToken, DermisError, Image, InvalidParameter, images

from ..errors import JobFailed, QueueFull, ShuttingDown
from ..jobs.queue import JobQueue, JobSpec, Priority, State
from .folder import Options, WatchFolder
from .runner import LocalRunner, WatchJob
from .settings import base_settings

log = logging.getLogger("dermis.watch")

CLIENT_NAME = "watch"
_KEYS = {"in", "out", "preset", "set", "polling", "stable_s", "rescan_s", "give_up_s", "attempts",
         "journal"}


class QueueRunner:
    """Runs a folder's job on the daemon's executor through its queue, at batch priority."""

    RETRY_S = 2.0  # how long to wait when the queue is full before submitting again

    def __init__(self, queue: JobQueue, config: pipeline.Config,
                 capacity: Callable[[], int] | None = None) -> None:
        self.queue = queue
        self.config = config
        self._capacity = capacity  # the executor's jobs at once (live cluster workers); 1 without it

    def capacity(self) -> int:
        """How many of a folder's jobs to keep in the queue at once: one per job the executor runs at once."""
        return self._capacity() if self._capacity is not None else 1

    def run(self, job: WatchJob, cancel: CancelToken) -> Image:
        s = job.settings
        region = pipeline.Region.parse(s.region) if s.region else None
        spec = JobSpec(
            recipe=s.recipe(), seed=job.seed, region=region, priority=Priority.BATCH,
            client_name=CLIENT_NAME,
            # decoded on the executor thread when the job starts: a waiting job holds no pixels
            image=lambda: images.load(job.path, max_pixels=self.config.max_pixels),
            finish=lambda result: result.image,
        )
        queued = self._submit(spec, cancel)
        while not queued.wait(0.05):
            if cancel.cancelled:  # the folder is stopping: end the daemon job at its next step
                self.queue.cancel(queued.id, cancel.reason)
        if queued.state is State.DONE:
            return queued.result
        if queued.state is State.CANCELLED:
            raise Cancelled(queued.message or "The job was cancelled.")
        raise JobFailed(queued.error_code or "internal", queued.message or "The job failed.")

    def _submit(self, spec: JobSpec, cancel: CancelToken):
        while True:
            cancel.check()
            try:
                return self.queue.submit(spec)[0]
            except QueueFull:  # editors keep the queue busy: the file waits, it does not fail
                deadline = time.monotonic() + self.RETRY_S
                while time.monotonic() < deadline and not cancel.cancelled:
                    time.sleep(0.1)
            except ShuttingDown as e:
                raise Cancelled(str(e)) from None


@dataclass
class FolderEntry:
    inbox: Path
    out: Path
    preset: str
    folder: WatchFolder | None = None
    thread: threading.Thread | None = None
    error: str = ""  # why the folder is not watched ("" while it is)


@dataclass
class WatchService:
    """The daemon's configured watch folders, each served by its own thread."""

    entries: list[FolderEntry] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: pipeline.Config, queue: JobQueue,
                    capacity: Callable[[], int] | None = None) -> WatchService:
        """Build every ``[[watch]]`` folder. Bad entries raise (the daemon refuses to start with a
        config it cannot follow); a preset whose weights are missing only stops that folder."""
        raw = config.section("watch")
        if isinstance(raw, dict):
            raw = [raw] if raw else []
        if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
            raise InvalidParameter("the config's watch folders must be [[watch]] tables.")
        service = cls()
        base_dir = config.path.parent if config.path else Path.cwd()
        for i, table in enumerate(raw):
            where = f"[[watch]] #{i + 1}"
            unknown = sorted(set(table) - _KEYS)
            if unknown:
                raise InvalidParameter(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                                       f"{', '.join(sorted(_KEYS))}.")
            if "in" not in table or "out" not in table:
                raise InvalidParameter(f"{where} needs both 'in' and 'out' folders.")
            inbox, out = _path(table["in"], base_dir), _path(table["out"], base_dir)
            preset = str(table.get("preset", pipeline.DEFAULT_PRESET))
            overrides = table.get("set", {})
            if not isinstance(overrides, dict):
                raise InvalidParameter(f"{where}: 'set' must be a table of setting = value.")
            settings = base_settings(preset, overrides)
            options = replace(
                Options(stable_s=10.0 if table.get("polling") else 2.0),
                polling=bool(table.get("polling", False)),
                **{k: float(table[k]) for k in ("stable_s", "rescan_s", "give_up_s") if k in table},
                max_attempts=int(table.get("attempts", 3)))
            entry = FolderEntry(inbox, out, preset)
            try:
                LocalRunner(config).preflight(settings)
                inbox.mkdir(parents=True, exist_ok=True)
                entry.folder = WatchFolder(
                    inbox, out, settings, QueueRunner(queue, config, capacity), options=options,
                    journal=_path(table["journal"], base_dir) if "journal" in table else None,
                    max_pixels=config.max_pixels)
            except (DermisError, OSError) as e:
                entry.error = str(e)
                log.error("watch folder %s is not watched: %s", inbox, e)
            service.entries.append(entry)
        return service

    def start(self) -> None:
        for entry in self.entries:
            if entry.folder is not None:
                entry.thread = threading.Thread(target=self._serve, args=(entry, entry.folder),
                                                name=f"dermis-watch-{entry.inbox.name}", daemon=True)
                entry.thread.start()
                log.info("watching %s -> %s (preset %s)", entry.inbox, entry.out, entry.preset)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every folder: a running folder job is cancelled in the queue and stays claimed."""
        for entry in self.entries:
            if entry.folder is not None:
                entry.folder.stop()
        for entry in self.entries:
            if entry.thread is not None:
                entry.thread.join(timeout)
            if entry.folder is not None:
                entry.folder.close()

    def counts(self) -> list[dict[str, Any]]:
        """Per folder: its paths and preset, pending/running/done/skipped/failed, and any error."""
        rows = []
        for e in self.entries:
            c = e.folder.counts() if e.folder is not None else {
                k: 0 for k in ("pending", "running", "done", "skipped", "failed")}
            rows.append({"folder": str(e.inbox), "out": str(e.out), "preset": e.preset, **c,
                         "error": e.error})
        return rows

    def _serve(self, entry: FolderEntry, folder: WatchFolder) -> None:
        try:
            folder.serve()
        except Exception as e:  # the folder stops; the daemon and the other folders go on
            entry.error = str(e)
            log.exception("watch folder %s stopped", entry.inbox)


def _path(value: Any, base: Path) -> Path:
    if not isinstance(value, str):
        raise InvalidParameter(f"watch folder paths must be strings, not {value!r}.")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()

