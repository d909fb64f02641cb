"""One watched folder: find complete inputs, claim them, run them, publish results, never lose one.

Layout (everything that is renamed stays on the watched folder's volume, so renames are atomic):

    IN_DIR/                 drop images here (and optional dermis.toml, <name>.dermis.toml)
    IN_DIR/.dermis/work/    claimed inputs (renamed here from IN_DIR: the claim)
    IN_DIR/.dermis/journal.sqlite, lock
    IN_DIR/done/            originals that were processed (or skipped as already done)
    IN_DIR/failed/          originals that failed, each with <name>.error.txt
    OUT_DIR/<stem>.dermis.png   results (a counter when the name is taken; nothing is overwritten)

One thread runs ``serve``: file-system events (watchdog) only wake it early; a full rescan runs every
``rescan_s`` seconds regardless, because events get lost. The order of journal commits and file
operations is what makes a kill -9 at any instruction recoverable; ``recovery.py`` reads it back.
Jobs run on threads of their own (``inflight.py``): one at a time locally, one per live worker on a Ray
cluster; everything else, the journal included, stays on the loop thread.
Where originals end (done/ or failed/) is ``archive.py``; what wakes the loop is ``events.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import platformdirs
from watchdog.observers.api import BaseObserver

import pipeline
from pipeline import Cancelled, CancelToken, DermisError, images
from pipeline.errors import ErrorCode
from pipeline.files import fsync_dir, write_new

from . import journal as J
from .archive import Archive
from .events import start_observer
from .faults import fault
from .files import FolderLock, free_path, sha256_file
from .inflight import Finished, InFlight
from .recovery import recover
from .runner import JobRunner, WatchJob
from .scan import FOLDER_SETTINGS, Scanner, ScanResult, find_sidecar
from .settings import Settings, resolve, seed_from_hash

log = logging.getLogger("dermis.watch")

STATE_DIR = ".dermis"


@dataclass(frozen=True)
class Options:
    stable_s: float = 2.0  # size+mtime unchanged this long before a file is looked at
    give_up_s: float = 30.0  # a stable file that does not decode gets this long to change
    rescan_s: float = 30.0  # full listing even when no event came
    max_attempts: int = 3  # runs started (crashes included) before a file is failed
    polling: bool = False  # PollingObserver (network shares) instead of native events
    poll_s: float = 1.0


def default_journal(inbox: Path, polling: bool) -> Path:
    """Locally, next to the files; for a share (``polling``), on this machine: SQLite's WAL needs
    shared memory that network file systems do not give."""
    if not polling:
        return inbox / STATE_DIR / "journal.sqlite"
    key = re.sub(r"[^A-Za-z0-9]+", "_", str(inbox.resolve())).strip("_")[-80:]
    return Path(platformdirs.user_state_dir("dermis")) / "watch" / f"{key}.sqlite"


def find_journal(inbox: Path) -> Path | None:
    for cand in (default_journal(inbox, False), default_journal(inbox, True)):
        if cand.is_file():
            return cand
    return None


class WatchFolder:
    def __init__(self, inbox: str | os.PathLike[str], out: str | os.PathLike[str], base: Settings,
                 runner: JobRunner, *, options: Options = Options(), journal: Path | None = None,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS) -> None:
        self.inbox = Path(inbox).resolve()
        self.out = Path(out).resolve()
        if not self.inbox.is_dir():
            raise pipeline.InvalidParameter(f"watch folder {self.inbox} does not exist.")
        if self.out in (self.inbox / STATE_DIR, self.inbox / "done", self.inbox / "failed"):
            raise pipeline.InvalidParameter(f"the output folder cannot be {self.out}: Dermis uses it.")
        self.base, self.runner, self.options = base, runner, options
        state = self.inbox / STATE_DIR
        self.work = state / "work"
        self.journal = J.Journal(journal or default_journal(self.inbox, options.polling))
        self.archive = Archive(self.inbox, self.work, self.journal)
        for d in (self.work, self.archive.done, self.archive.failed, self.out):
            d.mkdir(parents=True, exist_ok=True)
        self.scanner = Scanner(self.inbox, stable_s=options.stable_s, give_up_s=options.give_up_s,
                               max_pixels=max_pixels)
        self._lock = FolderLock(state / "lock")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._inflight = InFlight(runner, self._wake)
        self._observer: BaseObserver | None = None
        self._settling = 0  # files in the folder not yet complete, as of the last scan
        self._ready: list[Path] = []  # complete files in the folder, not yet claimed
        self.scans = 0  # full listings of the folder so far (the loop's heartbeat)

    # ------------------------------------------------------------------------------ public surface

    def serve(self, *, once: bool = False) -> None:
        """Watch until ``stop()`` (or, with ``once``, until nothing is left to do)."""
        if not self._lock.acquire():
            raise DermisError(f"{self.inbox} is already watched by another Dermis process "
                              f"(pid {self._lock.holder()}).")
        try:
            recover(self)
            self._observer = self._start_observer()
            self._loop(once)
        finally:
            # whatever ended the loop (stop() or an error), jobs still running are our own shutdown's:
            # cancel them, record each as interrupted (they stay claimed for the next start), bounded
            if len(self._inflight):
                self._stop.set()
                self._inflight.cancel_all("the watcher is stopping")
            for done in self._inflight.wait_all(timeout=60.0):
                with contextlib.suppress(OSError, sqlite3.Error):
                    self._finish(done)
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
                self._observer = None
            self._lock.release()

    def stop(self) -> None:
        """Finish cleanly: running jobs are cancelled and stay claimed for the next start."""
        self._stop.set()
        self._wake.set()
        self._inflight.cancel_all("the watcher is stopping")

    def counts(self) -> dict[str, int]:
        """pending (in the folder or claimed), running, done, skipped, failed."""
        c = self.journal.counts()
        return {"pending": self._settling + len(self._ready) + c.pop("queued"), **c}

    def close(self) -> None:
        self.journal.close()

    # ------------------------------------------------------------------------------------ the loop

    def _loop(self, once: bool) -> None:
        ready = self._ready
        last_scan = float("-inf")
        res = ScanResult()
        while not self._stop.is_set():
            try:
                for done in self._inflight.finished():
                    self._finish(done)
                entry = None
                if len(self._inflight) < self._inflight.capacity():
                    entry = self.journal.next_queued()
                    if entry is not None and self._process(entry):
                        continue
                now = time.monotonic()
                if not ready or self._wake.is_set() or now - last_scan >= self.options.rescan_s:
                    self._wake.clear()
                    self._check_observer()
                    res = self.scanner.scan(now)
                    last_scan = now
                    self.scans += 1
                    self._settling = res.waiting
                    for b in res.broken:
                        self._claim(b.path, b.error)
                    ready[:] = res.ready
                    if res.broken:
                        continue
                if ready:
                    path = ready.pop(0)
                    verdict, error = self.scanner.verify(path)
                    if verdict != "wait":
                        self._claim(path, error)
                    continue
            except (OSError, sqlite3.Error) as e:
                # A full disk, a share that went away, a locked journal: stay up, say why, and put the
                # journal back in order the way a restart would.
                pause = max(1.0, min(self.options.rescan_s, 10.0))
                log.error("%s: %s; trying again in %.0f s", self.inbox, e, pause)
                self._stop.wait(pause)
                ready.clear()
                last_scan = float("-inf")
                with contextlib.suppress(OSError, sqlite3.Error):
                    recover(self, busy=self._inflight.ids())
                continue
            if once and res.waiting == 0 and entry is None and not self._inflight and not ready:
                return
            if self._stop.is_set():  # stop() may have come just before the wake flag was cleared
                return
            due = self.scanner.next_due()
            timeout = self.options.rescan_s if due is None else min(self.options.rescan_s, due + 0.01)
            self._wake.wait(timeout)

    def _check_observer(self) -> None:
        if self._observer is not None and not self._observer.is_alive():
            # An emitter thread can die (a share went away, SMB1's bogus deletes): start a new one.
            log.warning("%s: the file event watcher stopped; restarting it", self.inbox)
            self._observer = self._start_observer()

    def _start_observer(self) -> BaseObserver:
        return start_observer(self.inbox, self._wake, polling=self.options.polling,
                              poll_s=self.options.poll_s)

    # ------------------------------------------------------------------------------------- claim

    def _claim(self, path: Path, broken: DermisError | None = None) -> J.Entry | None:
        entry = self.journal.add_claim(path.name)
        if (self.work / entry.work).exists():  # left by a lost journal: never rename over it
            entry = self.journal.update(entry.id, work=f"{entry.id}-{os.urandom(4).hex()}-{path.name}")
        fault("claim.journaled")
        try:
            os.rename(path, self.work / entry.work)  # atomic: a second watcher would get ENOENT
        except FileNotFoundError:  # gone, or another watcher on a shared folder took it first
            self.journal.delete(entry.id)
            self.scanner.forget(path)
            return None
        except PermissionError as e:
            self.journal.delete(entry.id)
            self.scanner.hold(path)
            log.error("%s: cannot be moved out of the folder (%s); left alone until it changes",
                      path.name, e.strerror or e)
            return None
        self.scanner.forget(path)
        fsync_dir(self.work)
        fault("claim.moved")
        return self._finish_claim(entry, broken)

    def _finish_claim(self, entry: J.Entry, broken: DermisError | None = None) -> J.Entry:
        sidecar = self._claim_sidecar(entry)
        work = self.work / entry.work
        sha = sha256_file(work)
        values: dict[str, Any] = {"sha256": sha, "state": J.QUEUED}
        try:
            if broken is not None:
                raise broken
            s = resolve(self.base, self.inbox / FOLDER_SETTINGS, sidecar)
            if s.seed is None:
                s = replace(s, seed=seed_from_hash(sha))
            values.update(settings=s.to_json(), settings_key=s.key())
        except DermisError as e:
            values.update(error_code=e.code.value, error=str(e))
        entry = self.journal.update(entry.id, **values,
                                    event="claimed" + (f" with {sidecar.name}" if sidecar else ""))
        log.info("%s: claimed%s", entry.name, f" with {sidecar.name}" if sidecar else "")
        return entry

    def _claim_sidecar(self, entry: J.Entry) -> Path | None:
        if entry.sidecar:
            target = self.work / entry.sidecar
            if not target.exists():  # died between recording and moving it
                src = find_sidecar(self.inbox, entry.name)
                if src is None:
                    return None
                os.rename(src, target)
            return target
        src = find_sidecar(self.inbox, entry.name)
        if src is None:
            return None
        name = f"{entry.id}-{src.name}"
        self.journal.update(entry.id, sidecar=name)
        os.rename(src, self.work / name)
        return self.work / name

    # ------------------------------------------------------------------------------------ process

    def _process(self, entry: J.Entry) -> bool:
        """Decide the file's outcome or start its run; False when it has to wait (its twin runs now)."""
        if entry.error_code:
            self.archive.decide(entry, J.FAILED, entry.error_code, entry.error)
            return True
        if self._inflight.running_same(entry):
            return False  # once the twin is done, this one is skipped as a repeat
        earlier = self.journal.find_done(entry.sha256, entry.settings_key, entry.id)
        if earlier is not None:
            self.archive.decide(entry, J.SKIPPED, None, f"same content and settings as {earlier.name} "
                                f"(#{earlier.id}), already done: {earlier.output}")
            return True
        if entry.attempts >= self.options.max_attempts:
            self.archive.decide(
                entry, J.FAILED, ErrorCode.CRASHED,
                f"processing was started {entry.attempts} times and the watcher stopped during each "
                "(crash, kill or power loss); giving up on this file.")
            return True
        assert entry.settings is not None, "a queued row has its settings or its error code"
        settings = Settings.from_json(entry.settings)
        assert settings.seed is not None, "the seed is fixed when the file is claimed"

        entry = self.journal.update(entry.id, state=J.RUNNING, attempts=entry.attempts + 1,
                                    event=f"running (attempt {entry.attempts + 1})")
        log.info("%s: running, preset %s, seed %s (attempt %d)", entry.name, settings.preset,
                 settings.seed, entry.attempts)
        fault("run")
        job = WatchJob(self.work / entry.work, entry.name, settings, settings.seed, str(self.inbox))
        token = CancelToken()
        if self._stop.is_set():
            token.cancel("the watcher is stopping")
        self._inflight.start(entry, settings, job, token)
        return True

    def _finish(self, done: Finished) -> None:
        """Record how a run ended (on the loop thread, like every journal write)."""
        entry, e = done.entry, done.error
        if isinstance(e, Cancelled):
            if self._stop.is_set():  # our own shutdown: not the file's fault, resume next start
                self.journal.update(entry.id, state=J.QUEUED, attempts=entry.attempts - 1,
                                    event="interrupted by shutdown; will resume")
                log.info("%s: interrupted by shutdown; stays claimed", entry.name)
                return None
            return self.archive.decide(entry, J.FAILED, e.code, str(e))
        if isinstance(e, DermisError):
            return self._retry_or_fail(entry, e.code, str(e))
        if e is not None:  # a bug or a library failure: keep the batch going, record it
            log.error("%s: unexpected error", entry.name, exc_info=e)
            return self._retry_or_fail(entry, ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")
        assert done.result is not None
        self._write_output(entry, done.settings, done.result, done.seconds)
        return None

    def _retry_or_fail(self, entry: J.Entry, code: ErrorCode, message: str) -> None:
        """Queue the file for another attempt if its error says one may help and attempts are left."""
        if not code.retryable or entry.attempts >= self.options.max_attempts:
            return self.archive.decide(entry, J.FAILED, code, message)
        self.journal.update(entry.id, state=J.QUEUED, error=None,
                            event=f"attempt {entry.attempts} failed ({code}): {message}; will retry")
        log.warning("%s: attempt %d failed (%s): %s; will retry", entry.name, entry.attempts, code, message)
        return None

    def _write_output(self, entry: J.Entry, settings: Settings, result: pipeline.Image,
                      seconds: float) -> None:
        name = Path(entry.name).stem + ".dermis" + settings.output_suffix(entry.name)
        data = images.encode(result, images.format_for_path(name))
        digest = hashlib.sha256(data).hexdigest()
        # Where the original will go is decided now too: once the result is published, recovery
        # only has to finish the archive (one commit fewer per file than a separate 'archiving').
        dest = self.archive.free_name(self.archive.done, entry.name, False)
        while True:
            target = free_path(self.out, name, taken=self.journal.outputs_in_flight() - {entry.output})
            entry = self.journal.update(entry.id, state=J.WRITING, output=str(target),
                                        output_sha256=digest, outcome=J.DONE, archived=str(dest))
            try:
                write_new(target, data, before_publish=lambda: fault("output.temp"))
                break
            except FileExistsError:  # someone took the name since free_path looked
                continue
            except OSError as e:  # full disk, output folder gone: maybe better next time
                entry = self.journal.update(entry.id, output=None, output_sha256=None, outcome=None,
                                            archived=None)
                return self._retry_or_fail(entry, ErrorCode.WRITE_FAILED,
                                           f"could not write the result {target}: {e.strerror or e}")
        fault("output.linked")
        self.archive.archive(entry, note=f"wrote {target.name} ({result.width}x{result.height}, {seconds:.2f} s)")
