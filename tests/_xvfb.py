"""A free X display number for the editors' GUI tests.

`xvfb-run -a` looks for free displays through /tmp/.X<n>-lock, but GIMP's Xvfb runs in a chroot with
its own /tmp while X servers bind *abstract* sockets shared by the whole host: two Xvfb started at
once (Krita's on the host, GIMP's in the chroot) could both pick :99 and one fails with "Cannot open
display". This picks a number no X server on the host holds, from both views.
"""

from __future__ import annotations

import random
import re
from pathlib import Path


def _displays_in_use() -> set[int]:
    used: set[int] = set()
    try:
        text = Path("/proc/net/unix").read_text()
    except OSError:
        text = ""
    used.update(int(n) for n in re.findall(r"/tmp/\.X11-unix/X(\d+)", text))
    used.update(int(m.group(1)) for p in Path("/tmp").glob(".X*-lock")
                if (m := re.fullmatch(r"\.X(\d+)-lock", p.name)))
    return used


def free_display() -> int:
    """A display number in 100-999 that no X server on this host uses now (random, so two test
    processes starting together rarely pick the same one)."""
    used = _displays_in_use()
    free = [n for n in range(100, 1000) if n not in used]
    return random.choice(free)
