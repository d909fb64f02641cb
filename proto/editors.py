"""What the Krita and GIMP plug-ins share beyond the client calls: progress text, error hints, the
defaults of their controls and how a selection becomes jobs' settings. Written once here, so the two
editors say and do the same; each plug-in only adds its own words (where its menu or field is).

Standard library only and Python 3.10 syntax: the editors' bundled Pythons import it (vendored with
the client as ``<plugin>/proto/editors.py``).
"""

from __future__ import annotations

from typing import Any

from .client_types import ClientError
from .events import Event, EventKind

# ------------------------------------------------------------------------------------ defaults

SEED_MAX = 2**31 - 1  # what a spin box holds; the daemon accepts up to 2^63-1
SCALE_MIN, SCALE_MAX = 0.25, 8.0
MAX_VARIATIONS = 4  # seeds per run ("N seeds"): that many layers, only the first visible
DEFAULT_PADDING = 128  # px of surroundings read around a selection, at least (presets use 64-96)
PADDING_MARGIN = 32  # px read beyond the context setting, so the daemon's crop never meets the edge
STRENGTH_DEFAULT = 100  # % layer opacity of a new result layer
DETAIL_SIGMA = 8.0  # px: the detail layer's default blur (pipeline/detail.py DEFAULT_SIGMA)
MODE_NORMAL, MODE_DETAIL = "normal", "detail"
GRAIN_MERGE = {"krita": "grain_merge", "gimp": "GRAIN_MERGE"}  # each editor's name for the blend mode


def padding_for(context: int | None) -> int:
    """Pixels to read around a selection so the daemon can take ``context`` px of surroundings and
    still fade into pixels it did not touch (a crop that reaches the sent edge would count it as the
    image border and not fade there)."""
    return max(DEFAULT_PADDING, int(context or 0) + PADDING_MARGIN)


def preset_defaults(preset: Any) -> dict[str, float]:
    """{'context': px, 'feather': px} of a PresetInfo (zeros from an older daemon that does not say)."""
    return {"context": int(getattr(preset, "context", 0) or 0), "feather": float(getattr(preset, "feather", 0) or 0)}


def denoise_stages(preset: Any) -> list[str]:
    """Ids of the preset's stages that take a denoise setting, in recipe order (from the daemon's
    PresetInfo; a preset without any, such as lite, has none)."""
    return [st.id for st in getattr(preset, "stages", ()) or () if "denoise" in (getattr(st, "params", {}) or {})]


def variation_seeds(seed: int, count: int) -> list[int]:
    """The seeds of ``count`` variations starting at ``seed`` (wrapping within 0..SEED_MAX)."""
    count = max(1, min(MAX_VARIATIONS, int(count)))
    return [(seed + i) % (SEED_MAX + 1) for i in range(count)]


# -------------------------------------------------------------------------------- progress text


def event_text(ev: Event) -> str | None:
    """One line for a job event, as both plug-ins show it (None: nothing new to say)."""
    k = ev.kind
    if k is EventKind.queued:
        return "Queued: next" if ev.position <= 0 else f"Queued: {ev.position} job(s) ahead"
    if k is EventKind.started:
        return "Started"
    if k is EventKind.stage:
        return ev.message or f"{ev.stage}…"
    if k is EventKind.progress:
        return progress_text(ev)
    if k is EventKind.preview:
        return None
    if k is EventKind.done:
        return "Inserting the result"
    return None


def progress_text(ev: Event) -> str:
    """'supir: tile 2/6, step 13/45 (42%)'."""
    parts = []
    if ev.tiles > 1:
        parts.append(f"tile {ev.tile}/{ev.tiles}")
    if ev.steps > 1:
        parts.append(f"step {ev.step}/{ev.steps}")
    head = ev.stage or "working"
    text = f"{head}: {', '.join(parts)}" if parts else head
    return f"{text} ({ev.fraction:.0%})"


def download_text(ev: Event) -> str | None:
    """'sdxl: sd_xl_base_1.0_0.9vae.safetensors (file 2 of 7): 1.2 GB of 6.9 GB (12%)'."""
    if ev.kind is EventKind.progress and ev.message:
        return f"{ev.stage}: {ev.message} ({ev.fraction:.0%})"
    if ev.kind is EventKind.stage:
        return f"Downloading {ev.stage}"
    if ev.kind is EventKind.done:
        return "Models downloaded"
    return event_text(ev)


# ---------------------------------------------------------------------------------- error hints

# Each editor's words for where things are; the hints below are the same sentences for both.
_WHERE = {
    "krita": {
        "server": "the address in the Dermis docker",
        "token": "set DERMIS_TOKEN for Krita",
        "install": "dermis install-plugin krita",
        "install_note": " and restart Krita",
        "download": "Press 'Download missing models…' in the Dermis docker",
        "again": "press 'Download missing models…' again",
    },
    "gimp": {
        "server": "the Server field of Refine skin… (empty = $DERMIS_ADDRESS, else the address the running "
                  "daemon announced)",
        "token": "leave the token argument empty to use the daemon's token file",
        "install": "dermis install-plugin gimp",
        "install_note": " (add --python-version X.Y if GIMP's Python is not the python3 on your PATH) and "
                        "restart GIMP",
        "download": "Filters → Enhance → Dermis → Download missing models… (or the button in Refine skin…) "
                    "fetches them",
        "again": "run Download missing models… again",
    },
}
_HINTS = {
    "unavailable": "Start the daemon with `dermis serve`, or check {server}.",
    "job_lost": "Start the daemon again (`dermis serve`) and run the job again.",
    "unauthenticated": "The daemon's token was not found or is wrong: restart `dermis serve`, or {token}.",
    "dependency_missing": "Reinstall the plugin with `{install}`{install_note}: it adds grpcio and "
                          "protobuf for this editor's Python.",
    "missing_weights": "{download}, or choose the 'lite' preset (it needs none).",
    "gated_model": "Then {again}.",
    "network_unavailable": "To resume, {again}.",
}


def hint(code: str, editor: str) -> str:
    """What the user of ``editor`` ("krita" or "gimp") can do about an error with this code; ""."""
    text = _HINTS.get(code, "")
    return text.format(**_WHERE[editor]) if text else ""


def with_hint(message: str, code: str, editor: str) -> str:
    """The error's own words, then the editor's hint (unless the message already says it)."""
    extra = hint(code, editor)
    if code == "unavailable" and "`dermis serve`" in message:  # the client said how to start it already
        extra = "Or check {server}.".format(**_WHERE[editor])
    return f"{message} {extra}" if extra and extra not in message else message


def describe_error(exc: BaseException) -> str:
    """What a plug-in shows for an exception: the client's own words, or a labelled bug."""
    if isinstance(exc, ClientError):
        return str(exc) or exc.__class__.__name__
    return f"Unexpected error ({type(exc).__name__}): {exc}. Please report it with the editor's log."


def explain(exc: BaseException, editor: str) -> str:
    """``describe_error`` plus the hint for its code."""
    return with_hint(describe_error(exc), getattr(exc, "code", "") or "", editor)
