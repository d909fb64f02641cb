"""File-system events for a watched folder: they only wake the folder's loop early.

Events are hints (they fire at write start, many times during a copy, and get lost or coalesced), so
the loop always decides from a listing (``scan.py``); this module only sets the wake flag. Native
events (inotify and friends) where the OS gives them, polling for network shares or when the OS
refuses more watches.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .scan import FOLDER_SETTINGS, SIDECAR_SUFFIX, is_input_name

log = logging.getLogger("dermis.watch")


class _QuietStopRace(logging.Filter):
    """watchdog logs this at ERROR when an event arrives while its emitter stops (it then carries on
    as if there were no event, watchdog PR #963); for a watcher that is shutting down it is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStopRace())


class Hint(FileSystemEventHandler):
    """Watchdog callback: a relevant change in the folder wakes the loop early. Nothing else."""

    _KINDS = {"created", "modified", "closed", "moved"}

    def __init__(self, inbox: Path, wake: threading.Event) -> None:
        self.inbox = str(inbox)
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        # opened/closed_no_write come from our own decode checks; deletes and our claims (moves out
        # of the folder) change nothing to look at.
        if event.is_directory or event.event_type not in self._KINDS:
            return
        path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        name = os.path.basename(path)
        if os.path.dirname(path) == self.inbox and (
                is_input_name(name) or name.endswith(SIDECAR_SUFFIX) or name == FOLDER_SETTINGS):
            self.wake.set()


def start_observer(inbox: Path, wake: threading.Event, *, polling: bool, poll_s: float) -> BaseObserver:
    """A started observer that sets ``wake`` on changes in ``inbox`` (polling when asked or needed)."""
    kinds: list[Any] = [PollingObserver] if polling else [Observer, PollingObserver]
    for kind in kinds:
        observer = kind(timeout=poll_s)
        try:
            observer.schedule(Hint(inbox, wake), str(inbox), recursive=False)
            observer.start()
            return observer
        except OSError as e:  # inotify watch/instance limits (ENOSPC, EMFILE)
            log.warning("%s: native file events unavailable (%s); polling instead", inbox, e)
    raise AssertionError("unreachable: the polling observer needs no OS support")
