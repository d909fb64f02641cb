"""Who is calling, how many long calls each kind may hold, and refusal logs that cannot flood.

Jobs belong to the client that submitted them. Every caller holds the same token, so the token cannot
tell clients apart; the thin client instead sends a random client id with every call (metadata
``dermis-client-id``, made once per ``Client``, or one the plug-in keeps across restarts), and
``ListJobs``, ``Watch``, ``Cancel`` and results only reach the jobs of that id. A caller that also
sends ``dermis-scope: all`` (``dermis status``) sees and may cancel every job. This keeps editors from
cancelling or reading each other's work by accident; it is no wall against a local program that holds
the token, which can claim any id (docs/daemon.md says so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline import InvalidParameter
from pipeline.errors import quoted

from ..errors import TooManyCalls
from .upload import JOB_ID

CLIENT_ID_KEY = "dermis-client-id"
SCOPE_KEY = "dermis-scope"  # "all": see and cancel every client's jobs
ANONYMOUS = "@anonymous"  # callers without a client id (clients older than the id) share this one


@dataclass(frozen=True)
class Caller:
    client_id: str  # the id jobs are filed under
    admin: bool  # sent dermis-scope: all
    peer: str

    @property
    def scope(self) -> str | None:
        """The owner to filter jobs by; None = every job (admin)."""
        return None if self.admin else self.client_id

    def __str__(self) -> str:
        return f"{self.client_id}{' (all jobs)' if self.admin else ''} at {self.peer}"


def caller_of(context: Any) -> Caller:
    """The caller of this call, from its metadata. A malformed id is an InvalidParameter."""
    md = dict(context.invocation_metadata() or ())
    client_id = md.get(CLIENT_ID_KEY, "")
    if isinstance(client_id, bytes):
        client_id = client_id.decode("utf-8", "replace")
    if client_id and not JOB_ID.fullmatch(client_id):
        raise InvalidParameter(f"the client id {quoted(client_id)} is not valid: use 1-64 characters from "
                               "A-Z a-z 0-9 . _ : - (the thin client makes one).")
    return Caller(client_id or ANONYMOUS, md.get(SCOPE_KEY) == "all", context.peer())


class Slots:
    """A fixed number of long calls of one kind at once (Watch streams, uploads): the rest of the
    server's threads stay free for the short control calls, so Cancel always gets through."""

    def __init__(self, kind: str, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._used >= self.limit:
                raise TooManyCalls(f"the daemon already has {self.limit} {self.kind} open, its limit; close "
                                   "some (or wait for them to end) and try again.")
            self._used += 1
        try:
            yield
        finally:
            with self._lock:
                self._used -= 1

    @property
    def used(self) -> int:
        return self._used


class Throttled:
    """Log lines of one kind at most once per ``interval`` s; the next line says how many were held
    back. 2000 calls with a wrong token write a few lines, not 2000."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -1e18) < self.interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            msg += f" (and {held} more like it in the last {self.interval:g} s, not logged)"
        self.logger.log(level, msg, *args)
