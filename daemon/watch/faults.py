"""Crash injection for the watch folder's crash tests, off unless $DERMIS_WATCH_FAULT is set.

``DERMIS_WATCH_FAULT=point[:n]`` kills this process with SIGKILL the n-th time it reaches ``point``
(``claim.journaled``, ``claim.moved``, ``run``, ``output.temp``, ``output.linked``, ``fail.noted``,
``archive.moved``), so tests/test_watch_crash.py can die exactly between two steps and check that the
next start recovers.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter

FAULT_ENV = "DERMIS_WATCH_FAULT"

_hits: Counter[str] = Counter()


def fault(point: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _hits[point] += 1
    if _hits[point] == int(nth or 1):
        logging.shutdown()
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        time.sleep(10)
