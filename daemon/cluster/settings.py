"""What `dermis serve --ray` and the config's ``[cluster]`` table say about the cluster (no Ray here).

    [cluster]
    address = "auto"          # or "10.0.0.1:6379"; --ray on the command line wins
    resource = "GPU"          # what one worker needs one unit of (tests use a custom resource on CPU nodes)
    workers = 0               # 0 = one per free unit of the resource, one more for each unit that joins
    local_fallback = false    # when the cluster is lost (or unreachable at start), run jobs on this machine
    retries = 2               # re-runs of a job whose worker died or could not load its models
    preload = ["supir-srpo"]  # presets whose weights every worker must have: checked at start, a worker
                              # lacking them leaves the pool with the reason (`dermis status`)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import InvalidParameter

_KEYS = {"address", "resource", "workers", "local_fallback", "retries", "preload"}


@dataclass(frozen=True)
class ClusterSettings:
    address: str  # "auto" or host:port of the head node's GCS
    resource: str = "GPU"
    workers: int = 0  # 0 = one per free unit of ``resource``, growing as nodes join
    local_fallback: bool = False
    retries: int = 2
    start_timeout_s: float = 120.0  # for the workers to start and check their models


def from_config(table: Any, address: str | None, workers: int | None) -> ClusterSettings | None:
    """The cluster settings, or None when neither --ray nor ``[cluster] address`` asks for one."""
    if not isinstance(table, dict):
        raise InvalidParameter("the config's [cluster] section must be a table.")
    unknown = set(table) - _KEYS
    if unknown:
        raise InvalidParameter(f"unknown key(s) in [cluster]: {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(sorted(_KEYS))}.")
    address = address or table.get("address")
    if not address:
        return None
    count = workers if workers is not None else int(table.get("workers", 0))
    retries = int(table.get("retries", 2))
    if count < 0 or retries < 0:
        raise InvalidParameter("[cluster] workers and retries must be 0 or more.")
    return ClusterSettings(address=str(address), resource=str(table.get("resource", "GPU")), workers=count,
                           local_fallback=bool(table.get("local_fallback", False)), retries=retries)
