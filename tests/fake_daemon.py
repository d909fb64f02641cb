"""One scripted stand-in for the daemon, for the plugins' own logic (job state, threading, progress
text): it implements ``proto.client.DaemonClient`` as the real ``Client`` does, so the plugin code
under test runs unchanged. It is the one place a daemon is faked; everything about the daemon itself
is tested against the real one (tests/test_daemon_*.py, the editor tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from proto import client as dc

# a short job as the daemon reports it: queued, started, a stage, progress, a note
PROGRESS: list[tuple[dc.EventKind, dict[str, Any]]] = [
    (dc.EventKind.queued, {"position": 1}),
    (dc.EventKind.started, {}),
    (dc.EventKind.stage, {"stage": "resample", "message": "resample: started"}),
    (dc.EventKind.progress, {"stage": "resample", "step": 1, "steps": 2, "fraction": 0.25}),
    (dc.EventKind.message, {"message": "skin_detail: skipped, weights not found"}),
    (dc.EventKind.progress, {"stage": "grain", "step": 2, "steps": 2, "tile": 2, "tiles": 4, "fraction": 0.9}),
]


def result_for(job_id: str) -> dc.JobResult:
    """A 2x2 RGBA layer result, as the lite preset names it."""
    return dc.JobResult(job_id=job_id, pixels=b"\0" * 16, width=2, height=2, channels=4, bit_depth=8,
                        offset_x=0, offset_y=0, canvas_width=2, canvas_height=2,
                        layer_name="Dermis (lite, 7)", preset="lite", seed=7)


class FakeDaemonClient(dc.DaemonClient):
    """Plays back ``events`` like the daemon would, then ends as ``end_with`` says (``done``, ``error``
    or ``nothing``: the stream just stops); honours cancel like the daemon would (the next event is
    ``cancelled``). Records what was submitted, which threads watched and cancelled, and closing."""

    def __init__(self, events: Sequence[tuple[dc.EventKind, dict[str, Any]]] = (), *,
                 submit_gate: threading.Event | None = None, step_s: float = 0.0, end_with: str = "done",
                 submit_error: Exception | None = None, server_info: dc.ServerInfo | None = None,
                 plan: dc.ModelPlan | None = None) -> None:
        self.events = list(events)
        self.submit_gate = submit_gate
        self.step_s = step_s
        self.end_with = end_with
        self.submit_error = submit_error
        self.server_info = server_info
        self.cancelled = threading.Event()
        self.cancel_threads: list[str] = []
        self.watch_thread = ""
        self.closed = False
        self.submitted: dc.JobRequest | None = None
        self.plan = plan
        self.fetch_requests: list[dict[str, Any]] = []  # what fetch_models was asked, in order

    def submit(self, job: dc.JobRequest) -> str:
        if self.submit_gate is not None:
            assert self.submit_gate.wait(5), "the test never opened the submit gate"
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted = job
        return job.job_id or "fake-job"

    def watch(self, job_id: str, after_seq: int = 0) -> Iterator[dc.Event]:
        self.watch_thread = threading.current_thread().name
        seq = 0
        for kind, fields in self.events:
            if self.cancelled.is_set():
                break
            seq += 1
            yield dc.Event(kind, job_id, seq, **fields)
            time.sleep(self.step_s)
        seq += 1
        if self.cancelled.is_set():
            yield dc.Event(dc.EventKind.cancelled, job_id, seq, message="cancelled")
        elif self.end_with == "done":
            yield dc.Event(dc.EventKind.done, job_id, seq, fraction=1.0, result=result_for(job_id))
        elif self.end_with == "error":
            yield dc.Event(dc.EventKind.error, job_id, seq, error_code="missing_weights",
                           message="supir: weights not found")

    def cancel(self, job_id: str) -> None:
        self.cancel_threads.append(threading.current_thread().name)
        self.cancelled.set()

    def info(self) -> dc.ServerInfo:
        if self.server_info is None:
            raise dc.DaemonUnavailable("the fake daemon was given no server info")
        return self.server_info

    def plan_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "") -> dc.ModelPlan:
        if self.plan is None:
            raise dc.DaemonUnavailable("the fake daemon was given no model plan")
        return self.plan

    def fetch_models(self, preset: str = "", roles: Iterable[str] = (), variant: str = "", *,
                     accept_licences: bool = False, job_id: str | None = None, client_name: str = "") -> str:
        if self.submit_gate is not None:
            assert self.submit_gate.wait(5), "the test never opened the submit gate"
        if self.submit_error is not None:
            raise self.submit_error
        self.fetch_requests.append(dict(preset=preset, roles=list(roles), variant=variant,
                                        accept_licences=accept_licences, client_name=client_name))
        return job_id or "fake-fetch"

    def close(self) -> None:
        self.closed = True


def poll_until(job: Any, until: Any = lambda j: j.finished, seen: Any = lambda j: j.phase,
               timeout: float = 5.0) -> list[Any]:
    """Poll a plugin Job as the docker's timer does until ``until(job)``; ``seen(job)`` at each change."""
    out, t0 = [], time.monotonic()
    while not until(job):
        if job.poll():
            out.append(seen(job))
        assert time.monotonic() - t0 < timeout, f"stuck in {job.phase}"
        time.sleep(0.005)
    return out
