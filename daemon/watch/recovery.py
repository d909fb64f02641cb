"""Putting a watch folder's journal back in order: after a crash or kill at any instruction (each row
says what may have half-happened, see ``journal.py``), and after an I/O error in the running loop."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ErrorCode

from . import journal as J
from .files import remove_temps, sha256_file
from .scan import SIDECAR_SUFFIX, is_input_name

if TYPE_CHECKING:
    from .folder import WatchFolder

log = logging.getLogger("dermis.watch")


def recover(folder: WatchFolder, busy: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Finish or undo whatever a previous run left half-done, then adopt unknown work files. Rows in
    ``busy`` belong to jobs this process still runs: they are left alone (never started twice)."""
    journal, work_dir = folder.journal, folder.work
    for entry in journal.active():
        if entry.id in busy:
            continue
        work = work_dir / entry.work
        if entry.state == J.CLAIMING:
            if work.exists():
                folder._finish_claim(entry)
            else:  # the rename never happened: the file is still in the folder (or was removed)
                journal.delete(entry.id)
            continue
        if entry.state == J.ARCHIVING:
            folder.archive.archive(entry)
            continue
        if entry.state == J.WRITING:
            # no output recorded: a failed write was being undone when the process died
            out = Path(entry.output) if entry.output else None
            if out is not None:
                remove_temps(out)
                if out.is_file() and sha256_file(out) == entry.output_sha256:
                    folder.archive.archive(entry, note=f"wrote {out.name}")  # published: finish it
                    continue
            # never published: run again (the seed is fixed, so the result is the same)
            entry = journal.update(entry.id, state=J.QUEUED, output=None, output_sha256=None,
                                   outcome=None, archived=None)
        if not work.exists():
            folder.archive.decide(entry, J.FAILED, ErrorCode.MISSING, "the claimed file disappeared from "
                                  "the work folder before it was processed (removed by hand?).")
        elif entry.state == J.RUNNING:
            journal.update(entry.id, state=J.QUEUED,
                           event=f"attempt {entry.attempts} was interrupted; will resume")
            log.info("%s: attempt %d was interrupted; will resume", entry.name, entry.attempts)
    _adopt_orphans(folder)


def _adopt_orphans(folder: WatchFolder) -> None:
    rows = folder.journal.all()
    known = {e.work for e in rows} | {e.sidecar for e in rows}
    for p in sorted(folder.work.iterdir()):
        if p.name in known or p.name.startswith(".") or p.name.endswith(SIDECAR_SUFFIX):
            continue
        name = re.sub(r"^\d+-", "", p.name)
        if not is_input_name(name):
            continue
        entry = folder.journal.add_claim(name)
        entry = folder.journal.update(entry.id, work=p.name)
        log.warning("%s: found in the work folder without a journal record; queued again", p.name)
        folder._finish_claim(entry)
