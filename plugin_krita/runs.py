"""Runs: one press of *Refine skin* and the daemon jobs it became; pure Python, no Qt, no Krita.

A run is one job per part of the selection (islands, or faces) and per seed (variations). Its jobs
go to the daemon a few at a time (``Scheduler``: the daemon queues them anyway, this only bounds the
open streams and the pixels held in flight); the run ends when every job has ended, and its results
are inserted together, as one layer or one group, in one undo step. Several runs may be queued: a
press while another run works queues a new one instead of being refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .jobs import Job, Phase

MAX_ACTIVE = 4  # jobs talking to the daemon at once (each holds a Watch stream)


@dataclass
class Piece:
    """What one job of a run covers: its part of the selection and its seed."""

    box: tuple[int, int, int, int]  # x, y, w, h in the run's area (document.Area)
    has_mask: bool  # the part came with a selection mask (it goes into a transparency mask)
    label: str  # "island 1 of 2", "face", "" for the only part
    seed: int
    first_seed: bool  # the run's first variation: visible; the others are inserted hidden


@dataclass
class Ask:
    """What one press of Refine skin asks for, taken from the settings when it is pressed."""

    preset: str
    scale: float
    seeds: list[int]
    overrides: dict[str, str]
    content: str
    strength: int
    islands: bool
    faces: bool
    padding: int


class Run:
    """One user action: its jobs, what they need to be placed, and its state."""

    def __init__(self, number: int, title: str, target: Any, jobs: list[Job], *, content: str,
                 strength: int, notes: Iterable[str] = (), key: str = "") -> None:
        self.number = number
        self.title = title  # "selection (96x80) on 'Background'", for the docker
        self.target = target  # document.Target: where the results go
        self.jobs = jobs  # each job's context is its Piece
        self.content = content  # "normal" or "detail"
        self.strength = strength  # % opacity of what gets inserted
        self.notes = list(notes)
        self.handled = False  # its results were inserted (or its end reported)
        self.key = key  # its record in resume.py ("" = its first job's id)
        self.remembered = False  # written down, so it survives a restart of Krita
        self.layers: dict[str, tuple[bytes, bytes | None]] | None = None  # job id -> prepare.layer_bytes
        self.layers_call: Any = None  # the worker computing ``layers``
        self.inserting: Any = None  # results.outcome's steps, once the layers are ready

    @property
    def finished(self) -> bool:
        return all(j.finished for j in self.jobs)

    @property
    def seeds(self) -> list[int]:
        return sorted({j.context.seed for j in self.jobs})

    def poll(self) -> bool:
        changed = False
        for job in self.jobs:
            changed = job.poll() or changed
        return changed

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def done(self) -> list[Job]:
        """Jobs with a result, in run order."""
        return [j for j in self.jobs if j.phase == Phase.done and j.result is not None]

    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.phase == Phase.failed]

    @property
    def fraction(self) -> float:
        return sum(j.fraction for j in self.jobs) / max(1, len(self.jobs))

    def label_of(self, job: Job) -> str:
        """How the docker names one job of this run: 'Run 2: island 1 of 2, seed 8'."""
        piece = job.context
        parts = [p for p in (piece.label, f"seed {piece.seed}") if p]
        return f"Run {self.number}: " + ", ".join(parts)


    def layer_name(self, job: Job) -> str:
        """The result's own name ('Dermis (lite, 7)'), with its part when the run has several."""
        piece, name = job.context, job.result.layer_name
        return name + (f" {piece.label}" if piece.label and len({j.context.label for j in self.jobs}) > 1 else "")

    def group_name(self, done: list[Job]) -> str:
        """'' for a single layer; the first result's name for one seed; 'Dermis (lite, seeds 7-9)' for more."""
        if len(done) == 1:
            return ""
        seeds = sorted({j.context.seed for j in done})
        first = done[0].result.layer_name
        if len(seeds) == 1:
            return first
        head = first.rsplit(",", 1)[0]  # "Dermis (lite" or "Dermis detail (lite"
        return f"{head}, seeds {', '.join(str(s) for s in seeds)})"


class Scheduler:
    """Starts waiting jobs of the queued runs, oldest first, while fewer than ``limit`` are active."""

    def __init__(self, limit: int = MAX_ACTIVE) -> None:
        self.limit = limit

    def start_more(self, runs: Iterable[Run]) -> int:
        jobs = [j for r in runs for j in r.jobs]
        active = sum(1 for j in jobs if j.started and not j.finished)
        started = 0
        for job in jobs:
            if active >= self.limit:
                break
            if job.phase == Phase.waiting:
                job.start()
                active += 1
                started += 1
        return started
