"""kill -9 of a real `python -m daemon watch` in the middle of a batch, then a restart: every input
ends with exactly one result or one failure record, no duplicates, nothing lost.

Two ways to die: at a named step (the DERMIS_WATCH_FAULT test hook sends SIGKILL to the watcher at the
n-th time it reaches that step: between a journal commit and the file operation it announces), and an
outside SIGKILL after N results have appeared, wherever the watcher happens to be.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from ._watch_helpers import (
    assert_accounted,
    expected_output,
    png_bytes,
    run_watcher,
    watch_cmd,
)
from .conftest import DATA, REPO, wait_for

pytestmark = pytest.mark.slow

GOOD = 7


def _drop_batch(inbox, n: int = GOOD, seed: int = 0):
    inbox.mkdir(exist_ok=True)
    good = {f"img{i:02d}.png": png_bytes(seed + i) for i in range(n)}
    for name, data in good.items():
        (inbox / name).write_bytes(data)
    (inbox / "broken.png").write_bytes((DATA / "truncated.png").read_bytes())
    return good, {"broken.png"}


@pytest.fixture(scope="module")
def expected():
    """The exact bytes each input must produce (pipeline.run, content-derived seed)."""
    return {f"img{i:02d}.png": expected_output(png_bytes(i)) for i in range(GOOD)}


# Each point is a moment between a committed journal state and the file operation it announces.
POINTS = [
    "claim.journaled:3",  # row written, file still in the folder
    "claim.moved:3",  # file in the work folder, journal still says 'claiming'
    "run:3",  # during the run
    "output.temp:3",  # result in its hidden temp file, not yet published
    "output.linked:3",  # result published, journal still says 'writing'
    "archive.moved:3",  # original in done/, journal not yet final
    "fail.noted:1",  # error.txt written, failed original not yet moved
]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_step_then_restart_accounts_for_everything(point, tmp_path, expected):
    inbox, out = tmp_path / "in", tmp_path / "out"
    good, bad = _drop_batch(inbox)
    first = run_watcher(inbox, out, "--once", env={"DERMIS_WATCH_FAULT": point})
    assert first.returncode == -signal.SIGKILL, f"the hook did not fire:\n{first.stderr}"
    second = run_watcher(inbox, out, "--once")
    assert second.returncode == 0, second.stderr
    assert_accounted(inbox, out, good, bad, expected=expected)


def test_outside_kills_after_n_results_then_restart(tmp_path, expected):
    """SIGKILL from outside wherever the watcher is, twice in one batch, with files arriving while
    it is down."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    good, bad = _drop_batch(inbox)

    def results() -> int:
        return sum(1 for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else 0

    for after in (2, 5):
        proc = subprocess.Popen(watch_cmd(inbox, out), cwd=REPO, env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda after=after: results() >= after, timeout=60, what=f"{after} results")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        late = f"late{after}.png"
        good[late] = png_bytes(900 + after)
        expected = {**expected, late: expected_output(good[late])}
        (inbox / late).write_bytes(good[late])
    second = run_watcher(inbox, out, "--once")
    assert second.returncode == 0, second.stderr
    assert_accounted(inbox, out, good, bad, expected=expected)


def test_repeated_kills_of_the_same_file_end_in_failed_not_a_loop(tmp_path):
    """A file that kills the watcher every time (say, a driver crash) is failed after --attempts runs."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "poison.png").write_bytes(png_bytes(1))
    for _ in range(2):
        r = run_watcher(inbox, out, "--once", "--attempts", "2", env={"DERMIS_WATCH_FAULT": "run:1"})
        assert r.returncode == -signal.SIGKILL
    r = run_watcher(inbox, out, "--once", "--attempts", "2")
    assert r.returncode == 0, r.stderr
    text = (inbox / "failed" / "poison.png.error.txt").read_text()
    assert "reason (crashed)" in text and "attempts: 2" in text
    assert not out.exists() or list(out.iterdir()) == []
