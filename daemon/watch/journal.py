"""The watch folder's journal: one SQLite row per claimed input, written before each step it records.

The file lives outside the watched listing (``IN_DIR/.dermis/`` or the user state folder) and uses WAL
with ``synchronous=FULL``, so a row that was committed survives a kill or a power cut. SQLite's own
documentation warns against WAL on network file systems: for a share, put the journal on a local disk.

An input moves through these states; every transition is committed before the file operation it
announces, so after a crash the row says what may have half-happened and recovery finishes or undoes it:

    claiming   row written, rename into the work folder may or may not have happened
    queued     in the work folder, hashed, settings resolved (or the reason they are invalid)
    running    a run was started (``attempts`` counts these, crashes included)
    writing    result encoded; ``output``, its hash and the original's place in done/ recorded; the
               result may or may not be published (once it is, the original moves to done/)
    archiving  outcome decided (skipped / failed); original on its way to done/ or failed/
    done | skipped | failed   final
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

CLAIMING, QUEUED, RUNNING, WRITING, ARCHIVING = "claiming", "queued", "running", "writing", "archiving"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
ACTIVE = (CLAIMING, QUEUED, RUNNING, WRITING, ARCHIVING)
FINAL = (DONE, SKIPPED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,            -- the file name as dropped
    state TEXT NOT NULL,
    work TEXT,                     -- its name in the work folder: <id>-<name>
    sidecar TEXT,                  -- its sidecar's name in the work folder, if it had one
    sha256 TEXT,
    settings TEXT,                 -- JSON of the resolved Settings
    settings_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    output TEXT,                   -- absolute path of the result
    output_sha256 TEXT,
    outcome TEXT,                  -- done / skipped / failed, set on entering 'archiving'
    archived TEXT,                 -- absolute path the original was moved to
    error_code TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inputs_by_content ON inputs (sha256, settings_key, state);
CREATE INDEX IF NOT EXISTS inputs_by_state ON inputs (state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    input_id INTEGER,
    name TEXT,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
"""


@dataclass(frozen=True)
class Entry:
    id: int
    name: str
    state: str
    work: str  # <id>-<name>, set in the transaction that adds the row
    sidecar: str | None
    sha256: str | None
    settings: str | None
    settings_key: str | None
    attempts: int
    output: str | None
    output_sha256: str | None
    outcome: str | None
    archived: str | None
    error_code: str | None
    error: str | None
    created: float
    updated: float


_COLUMNS = ", ".join(f.name for f in fields(Entry))


class Journal:
    """Thread-safe (one connection behind a lock): the daemon's RPC threads read counts from it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable at each commit, power cuts included
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------- writes

    def add_claim(self, name: str) -> Entry:
        """A new row in state 'claiming'; its work name contains the id, so it is unique."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO inputs (name, state, created, updated) VALUES (?, ?, ?, ?)",
                    (name, CLAIMING, now, now))
                rid = cur.lastrowid
                if rid is None:
                    raise sqlite3.DatabaseError("the journal gave no id for a new row")
                self._db.execute("UPDATE inputs SET work = ? WHERE id = ?", (f"{rid}-{name}", rid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(rid)

    def update(self, entry_id: int, *, event: str | None = None, **values: Any) -> Entry:
        """Change columns, and log ``event`` for it in the same transaction (one fsync, not two)."""
        values["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"UPDATE inputs SET {cols} WHERE id = ?", (*values.values(), entry_id))
                if event is not None:
                    self._db.execute(
                        "INSERT INTO events (time, input_id, name, message) "
                        "SELECT ?, id, name, ? FROM inputs WHERE id = ?", (values["updated"], event, entry_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(entry_id)

    def delete(self, entry_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM inputs WHERE id = ?", (entry_id,))

    def event(self, entry: Entry | None, message: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (time, input_id, name, message) VALUES (?, ?, ?, ?)",
                (time.time(), entry.id if entry else None, entry.name if entry else None, message))

    # -------------------------------------------------------------------------------------- reads

    def get(self, entry_id: int) -> Entry:
        entry = self._one("SELECT {} FROM inputs WHERE id = ?", (entry_id,))
        if entry is None:
            raise LookupError(f"journal {self.path} has no row {entry_id}")
        return entry

    def active(self) -> list[Entry]:
        marks = ",".join("?" * len(ACTIVE))
        return self._all(f"SELECT {{}} FROM inputs WHERE state IN ({marks}) ORDER BY id", ACTIVE)

    def next_queued(self) -> Entry | None:
        # Fewest attempts first: a file that keeps failing does not hold up the rest of the batch.
        return self._one("SELECT {} FROM inputs WHERE state = ? ORDER BY attempts, id LIMIT 1",
                         (QUEUED,))

    def find_done(self, sha256: str | None, settings_key: str | None, exclude: int) -> Entry | None:
        """An earlier done row with this content and settings (None matches nothing)."""
        return self._one(
            "SELECT {} FROM inputs WHERE sha256 = ? AND settings_key = ? AND state = ? AND id != ? "
            "ORDER BY id LIMIT 1", (sha256, settings_key, DONE, exclude))

    def outputs_in_flight(self) -> set[str]:
        rows = self._all("SELECT {} FROM inputs WHERE state = ? AND output IS NOT NULL", (WRITING,))
        return {e.output for e in rows if e.output is not None}

    def all(self) -> list[Entry]:
        return self._all("SELECT {} FROM inputs ORDER BY id", ())

    def counts(self) -> dict[str, int]:
        """Inputs by state group: queued (claimed, not started), running, done, skipped, failed."""
        out = {"queued": 0, "running": 0, "done": 0, "skipped": 0, "failed": 0}
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM inputs GROUP BY state").fetchall()
        for state, n in rows:
            group = state if state in FINAL else ("queued" if state in (CLAIMING, QUEUED) else "running")
            out[group] += n
        return out

    def recent_events(self, limit: int = 10) -> list[tuple[float, str | None, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, name, message FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return list(reversed(rows))

    def _one(self, sql: str, args: tuple) -> Entry | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _all(self, sql: str, args: tuple) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(sql.format(_COLUMNS), args).fetchall()
        return [Entry(*r) for r in rows]
