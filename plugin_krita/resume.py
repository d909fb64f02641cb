"""Runs that outlive Krita: what a run needs to be placed is written down while it works, so a Krita
closed (or a plugin restarted) mid-run finds its jobs in the daemon again and inserts them once.

The record lives in ``dermis-pending.json`` in Krita's data folder (written atomically, flushed at
once: Krita may be killed). It names the document by its file, so only runs on a saved image can be
resumed; a run on an unsaved image is cancelled when Krita closes (its result would have nowhere to
go). The daemon knows this plugin by a client id kept in the same file (``ListJobs`` only shows a
client its own jobs). A record is removed when its run has been handled, which makes "once" hold: the
next start finds nothing to resume.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krita import Krita
from PyQt5.QtCore import QStandardPaths

from . import document
from .document import Target
from .jobs import Job, Phase
from .runs import Piece, Run

FILE = "dermis-pending.json"


@dataclass
class Resumed:
    """Stands in for the JobRequest of a job submitted before a restart (only its id and output)."""

    job_id: str
    output: str = "layer"


def _path() -> Path:
    folder = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or str(Path.home())
    return Path(folder) / FILE


def _load() -> dict:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def client_id() -> str:
    """This plugin's id in the daemon (made once, then kept)."""
    data = _load()
    if not isinstance(data.get("client_id"), str) or not data["client_id"]:
        data["client_id"] = "krita-" + uuid.uuid4().hex
        _save(data)
    return data["client_id"]


def remember(run: Run) -> bool:
    """Write the run down when its image is saved as a file (else it cannot be found again)."""
    t = run.target
    path = t.document.fileName() if t.document is not None else ""
    if not path or any(j.request.output != "layer" for j in run.jobs):
        return False
    data = _load()
    data.setdefault("runs", []).append({
        "key": _key(run), "document": path, "node_id": t.node_id.toString() if t.node_id is not None else "",
        "node_name": t.node_name, "x": t.x, "y": t.y, "width": t.width, "height": t.height,
        "canvas": list(t.canvas), "wire_space": list(t.wire_space), "description": t.description,
        "content": run.content, "strength": run.strength, "notes": run.notes,
        "jobs": [{"job_id": j.id, "box": list(j.context.box), "has_mask": j.context.has_mask,
                  "label": j.context.label, "seed": j.context.seed, "first_seed": j.context.first_seed}
                 for j in run.jobs]})
    _save(data)
    return True


def forget(run: Run) -> None:
    data = _load()
    runs = [r for r in data.get("runs", []) if r.get("key") != _key(run)]
    if len(runs) != len(data.get("runs", [])):
        data["runs"] = runs
        _save(data)


def pending() -> list[dict]:
    """The records of runs not handled yet (from this or an earlier Krita)."""
    return [r for r in _load().get("runs", []) if isinstance(r, dict) and r.get("jobs")]


def known_jobs(connect: Any) -> set[str]:
    """Worker thread: the ids of every job the daemon holds for this client (ListJobs)."""
    with connect() as c:
        return {j.job_id for j in c.list_jobs(include_finished=True)}


def restore_all(runs: list[Run], known: set[str], connect: Any, count: int) -> list[Run]:
    """Runs for the records not among ``runs`` whose image is open, numbered after ``count``."""
    have = {r.key or r.jobs[0].id for r in runs}
    out = []
    for record in pending():
        if record["key"] not in have:
            run = restore(record, known, connect, count + len(out) + 1)
            if run is not None:
                run.remembered = True
                out.append(run)
    return out


def restore(record: dict, known: set[str], connect: Any, number: int) -> Run | None:
    """A Run for a record whose image is open again, following its jobs the daemon still has;
    None while the image is not open. Jobs the daemon no longer has end as failed, with a reason."""
    doc = next((d for d in Krita.instance().documents() if d.fileName() == record["document"]), None)
    if doc is None:
        return None
    node = _find(doc, record["node_id"], record["node_name"])
    target = Target(doc, node.uniqueId() if node is not None else (None if not record["node_id"] else "gone"),
                    record["node_name"], record["x"], record["y"], record["width"], record["height"],
                    tuple(record["canvas"]), tuple(record["wire_space"]), record["description"],
                    space=document.space_of(doc), resolution=document.resolution(doc),
                    document_name=document.title(doc))
    jobs = []
    for j in record["jobs"]:
        piece = Piece(tuple(j["box"]), j["has_mask"], j["label"], j["seed"], j["first_seed"])
        job_id = j["job_id"]
        job = Job(Resumed(job_id), connect, context=piece, begin=lambda _client, jid=job_id: jid)
        if job_id not in known:
            job._end(Phase.failed, error="The daemon no longer has this job (it restarted, or the result "
                     "expired); run it again.", code="not_found")
        jobs.append(job)
    return Run(number, record["description"] + " (resumed)", target, jobs, content=record["content"],
               strength=record["strength"], notes=record["notes"], key=record["key"])


def _key(run: Run) -> str:
    return run.key or run.jobs[0].id


def _find(doc: Any, node_id: str, name: str) -> Any:
    """The source layer again: by its unique id (kept in .kra files), else the one layer of its name."""
    if node_id:
        found = [n for n in _walk(doc.rootNode()) if n.uniqueId().toString() == node_id]
        if found:
            return found[0]
    named = [n for n in _walk(doc.rootNode()) if n.name() == name]
    return named[0] if len(named) == 1 else None


def _walk(node: Any) -> list[Any]:
    out = []
    for child in node.childNodes():
        out.append(child)
        out.extend(_walk(child))
    return out

