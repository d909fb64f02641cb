"""``DermisWorker``: the Ray actor that runs jobs on one GPU of a cluster node.

It keeps its models resident in the executor's own ``Residency`` (same LRU budget and out-of-memory
ladder as a local daemon; daemon/jobs/residency.py) and runs ``pipeline.run``. ``run`` is a streaming
generator: it yields, in order, ``("progress", Progress)`` items while the job runs (the memory
policy's notes are progress messages too), then exactly one terminal item:

    ("done", RunResult) | ("cancelled", reason) | ("failed", code, sentence, stage) | ("preempted",)
    | ("load_failed", code, sentence, stage)

``load_failed`` is a model file that this node cannot load (missing here, or truncated, corrupt or the
wrong file: ``MissingWeights`` / ``WrongWeights``), as opposed to ``failed``, an error of the job itself
(a bad parameter or input) that any worker would give. The driver takes a worker whose models fail to
load out of the pool and runs the job on another one (executor.py).

A node whose models live in another folder than the driver's config says starts its raylet with
``DERMIS_COMFY_MODELS`` set (``ray start`` passes its environment to the workers); those folders are
searched first.

The actor is threaded (pool.py gives it ``max_concurrency``), so ``cancel`` and ``preempt`` run while a
job does: they set flags that the job's ``CancelToken`` reads at its next step or tile boundary, the
same boundaries a local job stops or yields at. The class is plain Python; pool.py wraps it with
``ray.remote``, so importing this module does not import Ray.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

import pipeline
from pipeline import Cancelled, CancelToken, DermisError, Image, Recipe, Region
from pipeline.config import COMFY_ENV
from pipeline.device import describe, select_device
from pipeline.errors import ErrorCode, MissingWeights, WrongWeights
from pipeline.run import Content, OutputMode
from pipeline.stages import resolve

from ..errors import Preempted
from ..jobs.residency import Residency, default_budget

_END = ("done", "cancelled", "failed", "preempted", "load_failed")
LOAD_ERRORS = (MissingWeights, WrongWeights)  # the node's model files, not the job


def node_config(config: pipeline.Config) -> pipeline.Config:
    """The driver's config, with this node's own model folders (``DERMIS_COMFY_MODELS``) searched first."""
    local = [d for d in os.environ.get(COMFY_ENV, "").split(os.pathsep) if d]
    return config.with_comfy_models(local) if local else config


class DermisWorker:
    def __init__(self, config: pipeline.Config, device: str | None = None, budget: int | None = None) -> None:
        self.config = node_config(config)
        self.device, self.dtype = select_device(device or config.device)
        self.residency = Residency(budget if budget is not None else default_budget(self.device))
        self._tokens: dict[str, CancelToken] = {}
        self._yield: set[str] = set()
        self._lock = threading.Lock()
        self.running = ""

    # -- what the driver asks ----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (for `dermis status`)."""
        import ray

        info = describe(self.device, self.dtype)
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": f"{socket.gethostname()} ({ray.util.get_node_ip_address()})",
            "device": f"{info.name} ({self.device}, {str(self.dtype).removeprefix('torch.')})",
            "vram_free": info.free_memory, "vram_total": info.total_memory,
            "loaded": self.residency.loaded(), "job": self.running,
        }

    def preflight(self, recipes: list[Recipe]) -> str:
        """Check this node has every weight the recipes need; '' when it does, else why not (the
        driver then takes the worker out of the pool with that reason)."""
        try:
            for recipe in recipes:
                resolve(recipe, pipeline.WeightLocator(self.config))
        except DermisError as e:
            return str(e)
        return ""

    def cancel(self, job_id: str, reason: str) -> None:
        with self._lock:
            token = self._tokens.get(job_id)
        if token is not None:
            token.cancel(reason)

    def preempt(self, job_id: str) -> None:
        """Let an editor job have this worker: the running batch job unwinds at its next boundary."""
        with self._lock:
            self._yield.add(job_id)

    # -- running a job -----------------------------------------------------------------------------
    def run(self, job_id: str, recipe: Recipe, image: Image, seed: int, region: Region | None,
            mask: np.ndarray | None, output: OutputMode, content: Content = "normal",
            detail_sigma: float = 8.0) -> Iterator[tuple[Any, ...]]:
        items: queue.Queue[tuple[Any, ...]] = queue.Queue()
        token = CancelToken(checkpoint=lambda: self._maybe_yield(job_id))
        with self._lock:
            self._tokens[job_id] = token
        self.running = job_id

        def attempt(r: Recipe) -> pipeline.RunResult:
            return pipeline.run(r, image, seed=seed, region=region, mask=mask, output=output,
                                content=content, detail_sigma=detail_sigma,
                                progress=lambda p: items.put(("progress", p)), cancel=token, config=self.config,
                                models=self.residency.models, device=str(self.device))

        def work() -> None:
            items.put(self._outcome(attempt, recipe))  # the memory policy's notes come as progress messages

        thread = threading.Thread(target=work, name=f"dermis-job-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                yield item
                if item[0] in _END:
                    return
        finally:
            thread.join()
            with self._lock:
                self._tokens.pop(job_id, None)
                self._yield.discard(job_id)
            self.running = ""

    def _outcome(self, attempt: Any, recipe: Recipe) -> tuple[Any, ...]:
        stage = ""
        try:
            return ("done", self.residency.run(attempt, recipe))
        except Preempted:
            return ("preempted",)
        except Cancelled as e:
            return ("cancelled", str(e))
        except LOAD_ERRORS as e:
            return ("load_failed", e.code.value, str(e), stage)
        except DermisError as e:
            return ("failed", e.code.value, str(e), stage)
        except Exception as e:  # a bug fails the job, never the worker
            return ("failed", ErrorCode.INTERNAL.value, f"Internal error on cluster worker {socket.gethostname()} "
                    f"({type(e).__name__}: {e}).", stage)

    def _maybe_yield(self, job_id: str) -> None:
        with self._lock:
            wanted = job_id in self._yield
        if wanted:
            raise Preempted()
