"""Where a watched file's original ends: ``done/`` (processed or skipped) or ``failed/`` with a
``<name>.error.txt`` that says why, each step committed to the journal before the file moves.

Outcomes are decided once (state ``archiving``, or ``writing`` for a published result) and finished by
``archive``, which a restart calls again for a half-done archive: it never overwrites and never
loses the original, whatever instruction a crash interrupted.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pipeline.files import write_atomic

from . import journal as J
from .faults import fault
from .files import counter_name, finish_move, free_path, move_new
from .scan import SIDECAR_SUFFIX

log = logging.getLogger("dermis.watch")


class Archive:
    def __init__(self, inbox: Path, work: Path, journal: J.Journal) -> None:
        self.inbox, self.work, self.journal = inbox, work, journal
        self.done, self.failed = inbox / "done", inbox / "failed"

    def decide(self, entry: J.Entry, outcome: str, code: str | None, message: str | None,
               note: str = "") -> None:
        """Record the outcome (done, skipped or failed, with the code and reason), then archive."""
        folder = self.failed if outcome == J.FAILED else self.done
        dest = self.free_name(folder, entry.name, outcome == J.FAILED)
        entry = self.journal.update(entry.id, state=J.ARCHIVING, outcome=outcome,
                                    error_code=None if code is None else str(code), error=message,
                                    archived=str(dest))
        self.archive(entry, note)

    def archive(self, entry: J.Entry, note: str = "") -> None:
        """Move the original (and its sidecar) to its recorded place and mark the row final."""
        folder = self.failed if entry.outcome == J.FAILED else self.done
        work = self.work / entry.work
        dest = Path(entry.archived) if entry.archived else None
        if dest is not None and os.path.lexists(dest) and os.path.lexists(work) \
                and not finish_move(work, dest):
            dest = None  # the recorded name was taken by someone else in the meantime
        while os.path.lexists(work):
            if dest is None:
                dest = self.free_name(folder, entry.name, entry.outcome == J.FAILED)
                entry = self.journal.update(entry.id, archived=str(dest))
            if entry.outcome == J.FAILED:
                write_error(dest, entry)  # before the move: a failed original never lacks its reason
                fault("fail.noted")
            try:
                move_new(work, dest)
            except FileExistsError:
                dest = None
                continue
            fault("archive.moved")
        if dest is None:
            dest = self.free_name(folder, entry.name, entry.outcome == J.FAILED)
        if not os.path.lexists(dest):  # the work file vanished (removed by hand): keep the record
            log.error("%s: the claimed file disappeared from %s", entry.name, self.work)
            if entry.outcome == J.FAILED:
                write_error(dest, entry)
        if entry.sidecar and (self.work / entry.sidecar).exists():
            move_new(self.work / entry.sidecar, free_path(folder, dest.name + SIDECAR_SUFFIX))
        msg = self._summary(entry, dest, note)
        entry = self.journal.update(entry.id, state=entry.outcome, event=msg)
        log.log(logging.WARNING if entry.outcome == J.FAILED else logging.INFO, "%s: %s", entry.name, msg)

    @staticmethod
    def free_name(folder: Path, name: str, with_error: bool) -> Path:
        """A free name for the original (a-2.png …); for a failure its .error.txt must be free too."""
        n = 1
        while True:
            cand = folder / counter_name(name, n)
            if not os.path.lexists(cand) and not (with_error and os.path.lexists(error_path(cand))):
                return cand
            n += 1

    def _summary(self, entry: J.Entry, dest: Path, note: str) -> str:
        where = os.path.relpath(dest, self.inbox)
        if entry.outcome == J.DONE:
            return f"done, original in {where}: {note or 'wrote ' + str(entry.output)}"
        if entry.outcome == J.SKIPPED:
            return f"skipped, original in {where}: {entry.error}"
        return (f"failed ({entry.error_code}, {entry.attempts} attempt(s)), original in {where}: "
                f"{entry.error}")


def error_path(original: Path) -> Path:
    return original.parent / (original.name + ".error.txt")


def write_error(dest: Path, entry: J.Entry) -> None:
    """The failure note next to a failed original: what went wrong (code and sentence) and how to retry."""
    text = (
        f"Dermis could not process {entry.name}.\n"
        f"reason ({entry.error_code}): {entry.error}\n"
        f"attempts: {entry.attempts}\n"
        f"settings: {entry.settings or '-'}\n"
        f"time: {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        f"To try again, move {dest.name} back into the watched folder.\n"
    )
    write_atomic(error_path(dest), text.encode())
