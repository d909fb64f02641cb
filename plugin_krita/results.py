"""A run that has ended, made into what the user sees: its layers inserted (``layers``), and the
message and error the docker shows. Call on Krita's UI thread."""

from __future__ import annotations

import traceback
from typing import Any

from . import document, layers, prepare
from .jobs import Job, Phase
from .runs import Run
from .thin_client import editors

EDITOR = "krita"


def insert_some(run: Run) -> tuple[bool, Any]:
    """Insert the results of ``run`` for one timer tick (``prepare.advance``); (True, outcome's value)
    once done. A bug ends the run with its message (never Krita's exception dialog)."""
    try:
        run.inserting = run.inserting or outcome(run)
        return prepare.advance(run.inserting)
    except Exception as exc:
        traceback.print_exc()
        return True, ("", f"Unexpected error ({type(exc).__name__}): {exc}", [])


def outcome(run: Run) -> layers.Steps:
    """Insert the run's results (once; the caller marks it handled), in steps (layers.insert); the
    generator's value is (message, error, where they went); message and error may be ""."""
    done, failed = run.done(), run.failed()
    notes = list(run.notes)
    error = ""
    if failed:
        first = failed[0]
        error = (editors.with_hint(first.error, first.error_code, EDITOR)
                 + (f" ({len(failed)} of {len(run.jobs)} jobs failed)" if len(run.jobs) > 1 else ""))
    if not done:
        return ("" if failed else next((j.status_text for j in run.jobs if j.status_text), "Cancelled")), error, []
    try:
        if done[0].request.output == "full":
            placed = []
            for j in done:
                data = (run.layers or {}).get(j.id, (None, None))[0]
                placed.append((yield from layers.open_result_document(run.target, j.result, data)))
            name = ", ".join(p.name for p in placed)
            notes += [n for p in placed for n in p.notes]
        else:
            placed = [(yield from layers.insert(run.target, _items(run, done), group=run.group_name(done),
                                                detail=run.content == editors.MODE_DETAIL, strength=run.strength))]
            name, notes = placed[0].name, notes + placed[0].notes
    except document.DocumentError as e:
        return "", str(e), []
    took = max((j.ended_at or 0) for j in done) - min(j.started_at for j in run.jobs)
    notes += list(dict.fromkeys(m for j in done for m in (getattr(j.result, "messages", []) or [])))
    cancelled = sum(1 for j in run.jobs if j.phase == Phase.cancelled)
    if cancelled:
        notes.append(f"{cancelled} job(s) were cancelled")
    return f"Added '{name}' in {took:.1f} s" + "".join(f". {n}" for n in notes), error, placed


def layer_bytes(run: Run) -> dict[str, tuple[bytes, bytes | None]]:
    """Each done job's layer (or new document's pixels) in Krita's byte order (worker thread: no
    Krita calls)."""
    return {j.id: prepare.layer_bytes(j.result, j.context.has_mask and j.request.output == "layer")
            for j in run.done()}


def _items(run: Run, done: list[Job]) -> list[layers.Item]:
    # sent: the pixels the job uploaded, which it keeps anyway (a resumed job's request has none);
    # they are only used when the image was closed (layers.insert)
    return [layers.Item(j.context.box, j.result, run.layer_name(j), j.context.has_mask,
                        visible=j.context.first_seed, seed=j.context.seed, data=(run.layers or {}).get(j.id),
                        sent=getattr(j.request, "pixels", None))
            for j in done]
