"""`dermis models get`: the plan, the questions (licences, size), a progress bar per file, the outcome."""

from __future__ import annotations

import argparse
import sys

import pipeline
from pipeline import Progress, fetch
from pipeline.models import WeightLocator
from pipeline.models.catalogue import CatalogueFile, human_bytes

from .models import confirm, destination


def get(args: argparse.Namespace, config: pipeline.Config, locator: WeightLocator, targets: list[str]) -> int:
    root = destination(args, config)
    rows = fetch.status(targets, locator, args.variant)
    plan = fetch.plan(rows, root, args.variant)
    for item in plan.manual:
        print(f"by hand: {item.role}: {item.reason}")
    if not plan.downloads:
        print("Nothing to download: " + ("every file is found." if not plan.manual else
                                         "the files above have no download Dermis can do."))
        return 0 if not plan.manual else 1
    print(f"To download into {root}:")
    for item in plan.downloads:
        e = item.entry
        print(f"  {item.role}: {e.filename} ({e.size_text()}, {e.repo or e.url})")

    def accept(entries: list[CatalogueFile]) -> bool:
        print("These models are for non-commercial use only:")
        for e in entries:
            print(f"  {e.filename} ({e.role}): {e.licence}; {e.page_url}")
        return confirm("Accept these licences?", args.yes)

    with DownloadBars(enabled=sys.stderr.isatty() or args.verbose) as bars:
        done = fetch.fetch(plan, accept=accept, progress=bars.update,
                           confirm=lambda n: confirm(f"Download {human_bytes(n)} into {root}?", args.yes))
    for f in done:
        print(f"got {f.role}: {f.path} ({human_bytes(f.size)}, {f.checked} checked)")
    if root not in WeightLocator(config).roots():
        print(f"note: {root} is not a folder Dermis searches; add it to the config "
              f"(comfy_models = [\"{root}\"]) or pass --comfy-models {root}.")
    lacking = [r.role for r in fetch.status(targets, WeightLocator(config.with_comfy_models([root])), args.variant)
               if r.missing and r.required]
    print("Ready: " + " ".join(targets) if not lacking else f"Still missing: {', '.join(lacking)}.")
    return 0 if not lacking else 1


class DownloadBars:
    """One tqdm bar (bytes) per file, fed by the fetch's Progress reports; silent when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._role = ""

    def __enter__(self) -> DownloadBars:
        return self

    def update(self, p: Progress) -> None:
        if not p.steps:  # a file started or finished (the summary comes at the end)
            self._close()
            return
        if not self.enabled:
            return
        if self._bar is None or p.stage != self._role:
            from tqdm import tqdm

            self._close()
            self._role = p.stage
            self._bar = tqdm(total=p.steps, unit="MiB", file=sys.stderr, leave=True,
                             desc=p.stage)
        self._bar.update(p.step - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self._close()
