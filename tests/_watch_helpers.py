"""Shared set-up for the watch-folder tests: small images, a watcher in a thread or a subprocess, and
the "every input accounted for exactly once" check."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

import pipeline
from daemon.watch.folder import Options, WatchFolder, find_journal
from daemon.watch.runner import LocalRunner
from daemon.watch.settings import Settings, base_settings, seed_from_hash
from pipeline import images

from .conftest import REPO, wait_for

FAST = Options(stable_s=0.2, give_up_s=1.0, rescan_s=1.0, poll_s=0.2)

# A preset built on the tiny spandrel model (needs --comfy-models / config comfy_models).
TINY_PRESET = """
name = "wtiny"
label = "watch tiny"
scale = 1.0
[[stage]]
id = "skin_detail"
kind = "upscale_model"
model = "skin_detail"
tile = 64
overlap = 8
[[stage]]
id = "grain"
kind = "grain"
strength = 0.02
"""


def png_bytes(seed: int, size: int = 64, bit_depth: int = 8) -> bytes:
    rng = np.random.default_rng(seed)
    if bit_depth == 16:
        arr = (rng.random((size, size, 3)) * 65535).astype(np.uint16)
    else:
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    return images.encode(images.from_array(arr), "PNG")


def write_user_preset(text: str, name: str) -> Path:
    """User presets live in $XDG_CONFIG_HOME/dermis/presets (conftest points it at a temp dir)."""
    d = Path(os.environ["XDG_CONFIG_HOME"]) / "dermis" / "presets"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.toml").write_text(text)
    return d / f"{name}.toml"


def expected_output(data: bytes, settings: Settings | None = None, config=None) -> bytes:
    """What the watcher must write for these input bytes: pipeline.run with the content-derived seed."""
    import hashlib

    s = settings or base_settings("lite")
    seed = s.seed if s.seed is not None else seed_from_hash(hashlib.sha256(data).hexdigest())
    region = pipeline.Region.parse(s.region) if s.region else None
    r = pipeline.run(s.recipe(), images.decode(data), seed=seed, region=region, config=config)
    return images.encode(r.image, "PNG")


class Watcher:
    """``WatchFolder.serve`` in a thread with the real runner and real watchdog; stops on exit."""

    def __init__(self, inbox: Path, out: Path, *, preset: str = "lite", options: Options = FAST,
                 config=None, runner=None, overrides=()) -> None:
        config = config or pipeline.Config()
        self.folder = WatchFolder(inbox, out, base_settings(preset, list(overrides)),
                                  runner or LocalRunner(config), options=options,
                                  max_pixels=config.max_pixels)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            self.folder.serve()
        except BaseException as e:  # surfaced by __exit__
            self.error = e

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.folder.stop()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            import traceback

            stack = "".join(traceback.format_stack(sys._current_frames()[self._thread.ident]))
            raise AssertionError(f"the watcher did not stop:\n{stack}")
        self.folder.close()
        if self.error is not None and exc[0] is None:
            raise self.error

    def wait_finished(self, n: int, timeout: float = 30.0) -> dict[str, int]:
        def finished() -> bool:
            if self.error is not None:
                raise self.error
            c = self.folder.counts()
            return c["done"] + c["skipped"] + c["failed"] >= n and c["running"] == 0
        wait_for(finished, timeout, f"{n} finished inputs ({self.folder.counts()})")
        return self.folder.counts()


def journal_rows(inbox: Path) -> list[tuple]:
    path = find_journal(inbox)
    assert path is not None, f"no journal for {inbox}"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT name, state, attempts, output, archived, error_code FROM inputs "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


def watch_cmd(inbox: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "daemon", "watch", str(inbox), "--out", str(out), "--preset", "lite",
            "--stable", "0.1", "--give-up", "0.4", "--rescan", "0.5", *extra]


def run_watcher(inbox: Path, out: Path, *extra: str, env: dict | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(watch_cmd(inbox, out, *extra), cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def assert_accounted(inbox: Path, out: Path, good: dict[str, bytes], bad: set[str] = frozenset(),
                     expected: dict[str, bytes] | None = None) -> None:
    """Every input ended with exactly one result or one failure record; nothing duplicated or lost."""
    leftover = [p.name for p in inbox.iterdir() if p.is_file() and p.name in {*good, *bad}]
    assert leftover == [], f"inputs never taken: {leftover}"
    work = list((inbox / ".dermis" / "work").iterdir())
    assert work == [], f"left in the work folder: {work}"
    temps = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert temps == [], f"temp files left in the output folder: {temps}"
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == sorted(Path(n).stem + ".dermis.png" for n in good), "missing or duplicate outputs"
    done = {p.name: p.read_bytes() for p in (inbox / "done").iterdir()}
    assert sorted(done) == sorted(good)
    for name, data in good.items():
        assert done[name] == data, f"{name}: the original was changed"
        result = (out / (Path(name).stem + ".dermis.png")).read_bytes()
        images.decode(result)  # complete and valid
        if expected is not None:
            assert result == expected[name], f"{name}: the result differs from pipeline.run's"
    failed = sorted(p.name for p in (inbox / "failed").iterdir())
    assert failed == sorted([*bad, *(f"{n}.error.txt" for n in bad)])
    rows = journal_rows(inbox)
    final = [(r[0], r[1]) for r in rows]
    assert sorted(final) == sorted([(n, "done") for n in good] + [(n, "failed") for n in bad]), \
        f"journal does not match: {rows}"
