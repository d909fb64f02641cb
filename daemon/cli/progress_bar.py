"""A terminal progress bar fed by pipeline Progress events (tqdm, on stderr)."""

from __future__ import annotations

import sys

from pipeline import Progress


class ProgressBar:
    def __init__(self, *, enabled: bool = True, label: str = "") -> None:
        self.enabled = enabled
        self.label = label
        self._bar = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, file=sys.stderr, desc=self.label, leave=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        return self

    def update(self, p: Progress) -> None:
        if self._bar is None:
            return
        target = int(p.fraction * 1000)
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)
        desc = p.stage or self.label
        if p.tiles:
            desc += f" tile {p.tile}/{p.tiles}"
        if p.steps:
            desc += f" step {p.step}/{p.steps}"
        self._bar.set_description_str(desc, refresh=False)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
