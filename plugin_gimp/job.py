"""The plug-in's settings, the job it sends, and how daemon events read as progress text.

No GIMP here: this module turns the procedure's arguments into a ``JobRequest``, runs it through the
thin client (with the cancel guard watching), and reports progress through plain callbacks, so it
runs the same under GIMP and in the unit tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import cancel_guard
from ._client import client, overrides

CLIENT_NAME = "gimp"

# Stage ids of the presets that have a denoise knob (supir-srpo: two Flux refine passes). The dialog
# offers them as plain numbers; 0 keeps the preset's value.
DENOISE_STAGES = ("refine", "final")


class SettingsError(ValueError):
    """An argument that cannot be turned into a job (the message is shown as is)."""


@dataclass(frozen=True)
class Settings:
    """Everything one run of the procedure needs, from the dialog or the PDB arguments."""

    preset: str = ""  # "" = the daemon's default preset
    scale: float = 1.0  # 1 = refine in place; >1 enlarges the image by that factor
    refine_denoise: float = 0.0  # 0 = the preset's
    final_denoise: float = 0.0
    overrides: str = ""  # "stage.param=value, ..." for anything else
    seed: int = -1  # -1 = the daemon picks one (the layer name tells which)
    server: str = ""  # "" = $DERMIS_ADDRESS or the running daemon's runtime file
    token: str = ""  # "" = $DERMIS_TOKEN or the daemon's token file

    @classmethod
    def from_config(cls, config) -> Settings:
        """Read a GimpProcedureConfig (anything with ``get_property``)."""
        get = config.get_property
        return cls(
            preset=(get("preset") or "").strip(),
            scale=float(get("scale")),
            refine_denoise=float(get("refine-denoise")),
            final_denoise=float(get("final-denoise")),
            overrides=get("overrides") or "",
            seed=int(get("seed")),
            server=(get("server") or "").strip(),
            token=(get("token") or "").strip(),
        )

    def override_map(self) -> dict[str, str]:
        """The overrides the daemon gets: the free-form ones (items separated by commas, semicolons
        or new lines, parsed as `dermis --set` parses them), then the denoise fields on top."""
        try:
            out = overrides.parse_overrides(overrides.split_overrides(self.overrides))
        except overrides.OverrideError as e:
            raise SettingsError(f"Overrides: {e}") from None
        for stage_id, value in zip(DENOISE_STAGES, (self.refine_denoise, self.final_denoise), strict=True):
            if value > 0:
                out[f"{stage_id}.denoise"] = f"{value:g}"
        return out

    def check(self) -> None:
        if not 0.25 <= self.scale <= 8:
            raise SettingsError(f"Scale must be between 0.25 and 8, not {self.scale:g}.")
        for name, value in (("Refine denoise", self.refine_denoise), ("Final denoise", self.final_denoise)):
            if not 0 <= value <= 1:
                raise SettingsError(f"{name} must be between 0 and 1 (0 keeps the preset's), not {value:g}.")
        self.override_map()


def job_request(
    settings: Settings,
    *,
    pixels: bytes,
    width: int,
    height: int,
    channels: int,
    bit_depth: int,
    mask: bytes | None,
    icc_profile: bytes | None = None,
    job_id: str | None = None,
):
    """The request for one region of one layer, in layer mode (the daemon returns region + alpha)."""
    settings.check()
    return client.JobRequest(
        pixels=pixels,
        width=width,
        height=height,
        channels=channels,
        bit_depth=bit_depth,
        preset=settings.preset,
        scale=settings.scale,
        seed=None if settings.seed < 0 else settings.seed,
        overrides=settings.override_map(),
        mask=mask,
        output="layer",
        priority="editor",
        job_id=job_id,
        icc_profile=icc_profile,
        client_name=CLIENT_NAME,
    )


def progress_text(ev) -> str | None:
    """What the progress bar says for a daemon event (None: keep the current text)."""
    kind = ev.kind.value
    if kind == "queued":
        return "Dermis: next in the daemon's queue" if ev.position <= 0 else (
            f"Dermis: waiting in the daemon's queue ({ev.position} ahead)")
    if kind == "started":
        return "Dermis: started"
    if kind == "stage":
        return f"Dermis: {ev.message or ev.stage}"
    if kind == "progress":
        parts = [ev.stage] if ev.stage else []
        if ev.tiles > 1:
            parts.append(f"tile {ev.tile}/{ev.tiles}")
        if ev.steps > 1:
            parts.append(f"step {ev.step}/{ev.steps}")
        return "Dermis: " + ", ".join(parts) if parts else None
    if kind == "done":
        return "Dermis: inserting the result"
    return None


class Reporter:
    """Turns events into progress calls, at most ``rate`` per second (each is a round trip to GIMP)."""

    def __init__(
        self,
        set_text: Callable[[str], None],
        set_fraction: Callable[[float], None],
        rate: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[object], str | None] | None = None,
    ) -> None:
        self._set_text, self._set_fraction = set_text, set_fraction
        self._describe = describe or progress_text
        self._interval, self._clock = 1.0 / rate, clock
        self._last = -1e9
        self._text: str | None = None
        self.messages: list[str] = []  # daemon notes worth showing once the job is done

    def __call__(self, ev) -> None:
        kind = ev.kind.value
        if kind == "message" and ev.message:
            self.messages.append(ev.message)
            return
        text = self._describe(ev)
        # stage changes and the end always show; step/tile ticks are throttled among themselves
        if kind == "progress":
            now = self._clock()
            if now - self._last < self._interval:
                return
            self._last = now
        if text and text != self._text:
            self._text = text
            self._set_text(text)
        if kind == "progress":
            self._set_fraction(min(1.0, max(0.0, ev.fraction)))
        elif kind == "done":
            self._set_fraction(1.0)


def run(
    settings: Settings,
    request,
    on_event: Callable[[object], None] | None = None,
    *,
    guard: bool = True,
    connect: Callable[[str | None, str | None], client.DaemonClient] = client.Client,
):
    """Submit ``request`` and wait for its result, reporting every event to ``on_event``.

    While it waits, a separate guard process watches this one: GIMP cancels a plug-in's progress by
    killing the plug-in, and the guard then cancels the job in the daemon (see cancel_guard).
    Raises ``client.ClientError`` subclasses (DaemonUnavailable, Unauthenticated, JobFailed,
    JobCancelled, DependencyMissing) with the daemon's message. ``connect(address, token)`` makes
    the connection (tests pass a fake daemon).
    """
    import uuid

    if request.job_id is None:
        request.job_id = str(uuid.uuid4())
    address, token = settings.server or None, settings.token or None
    watcher = None
    try:
        with connect(address, token) as c:
            # the guard cancels as this connection's client: only the submitting client may
            if guard:
                watcher = cancel_guard.spawn(request.job_id, address, token, getattr(c, "client_id", None))
            return c.run(request, on_event)
    finally:
        if watcher is not None:
            watcher.finish()


def download_text(ev) -> str | None:
    """What the progress bar says during a model download (the daemon's own words per file)."""
    kind = ev.kind.value
    if kind == "progress" and ev.message:
        return f"Dermis: {ev.stage}: {ev.message}"
    if kind == "stage":
        return f"Dermis: downloading {ev.stage}"
    if kind == "done":
        return "Dermis: models downloaded"
    return progress_text(ev)


def plan_download(settings: Settings, *, connect: Callable[..., client.DaemonClient] = client.Client):
    """What the daemon would download for ``settings.preset`` (a dry run; nothing starts)."""
    with connect(settings.server or None, settings.token or None) as c:
        return c.plan_models(settings.preset)


def run_download(
    settings: Settings,
    *,
    accept_licences: bool,
    on_event: Callable[[object], None] | None = None,
    guard: bool = True,
    connect: Callable[[str | None, str | None], client.DaemonClient] = client.Client,
):
    """Have the daemon download the models ``settings.preset`` lacks and follow it to the end, like
    ``run`` follows a refine (the same cancel guard: killing the plug-in cancels the download, whose
    partial file the next download resumes). Returns the job's result (its notes in ``messages``)."""
    import uuid

    job_id = str(uuid.uuid4())
    address, token = settings.server or None, settings.token or None
    watcher = cancel_guard.spawn(job_id, address, token) if guard else None
    try:
        with connect(address, token) as c:
            c.fetch_models(settings.preset, accept_licences=accept_licences, job_id=job_id,
                           client_name=CLIENT_NAME)
            return c.follow(job_id, on_event)
    finally:
        if watcher is not None:
            watcher.finish()


# What a GIMP user can do about the errors the client already explains in general terms.
_HINTS = {
    "unavailable": "In GIMP: the Server field of Refine skin… (empty = $DERMIS_ADDRESS, else the "
                   "address the running daemon announced).",
    "unauthenticated": "In GIMP: leave the token argument empty to use the daemon's token file.",
    "dependency_missing": "In GIMP: run `dermis install-plugin gimp` (add --python-version X.Y if "
                          "GIMP's Python is not the python3 on your PATH) and restart GIMP.",
    "missing_weights": "In GIMP: Filters → Enhance → Dermis → Download missing models… (or the button "
                       "in Refine skin…) fetches them; the 'lite' preset needs none.",
    "gated_model": "Then run Download missing models… again.",
    "network_unavailable": "Run Download missing models… again to resume.",
}


def explain(e: Exception) -> str:
    """The client's message (it says what went wrong), plus the GIMP side of the fix."""
    hint = _HINTS.get(getattr(e, "code", ""))
    return f"{e}\n{hint}" if hint else str(e)
