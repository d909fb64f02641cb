"""The plug-in's settings, the jobs one run sends, and how daemon events read as progress text.

No GIMP here: this module turns the procedure's arguments (and the daemon's preset info) into
``JobRequest``s, runs them through the thin client (with the cancel guard watching), and reports
progress through plain callbacks, so it runs the same under GIMP and in the unit tests. What the
GIMP and Krita plug-ins say and default to (progress text, error hints, padding, seeds, which
stages take a denoise) comes from the thin client (proto/editors.py), not from here.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import cancel_guard
from ._client import client, editors, overrides

CLIENT_NAME = "gimp"
DENOISE_FIELDS = ("denoise-1", "denoise-2")  # the preset's 1st and 2nd stage that takes a denoise
OUTPUTS = (editors.MODE_NORMAL, editors.MODE_DETAIL)


class SettingsError(ValueError):
    """An argument that cannot be turned into a job (the message is shown as is)."""


@dataclass(frozen=True)
class Settings:
    """Everything one run of the procedure needs, from the dialog or the PDB arguments."""

    preset: str = ""  # "" = the daemon's default preset
    scale: float = 1.0  # 1 = refine in place; >1 enlarges the image by that factor
    output: str = editors.MODE_NORMAL  # "normal" or "detail" (a Grain Merge layer over the source)
    strength: int = editors.STRENGTH_DEFAULT  # % opacity of the new layer(s)
    feather: float = -1.0  # px; -1 = the preset's (the daemon's preset info says how much)
    context: int = -1  # px of surroundings the daemon works on around each part; -1 = the preset's
    denoise: tuple[float, float] = (0.0, 0.0)  # per denoise stage of the preset, in order; 0 = the preset's
    overrides: str = ""  # "stage.param=value, ..." for anything else (everything `--set` takes)
    seed: int = -1  # -1 = a new one each run (the layer name tells which)
    variations: int = 1  # seeds per run: that many layers in a group, only the first visible
    islands: bool = True  # each separate part of the selection is a job of its own
    faces: bool = False  # each face the daemon finds in the selection is a job of its own
    server: str = ""  # "" = $DERMIS_ADDRESS or the running daemon's runtime file
    token: str = ""  # "" = $DERMIS_TOKEN or the daemon's token file

    @classmethod
    def from_config(cls, config) -> Settings:
        """Read a GimpProcedureConfig (anything with ``get_property``)."""
        get = config.get_property
        return cls(
            preset=(get("preset") or "").strip(),
            scale=float(get("scale")),
            output=(get("output") or editors.MODE_NORMAL).strip(),
            strength=int(get("strength")),
            feather=float(get("feather")),
            context=int(get("context")),
            denoise=(float(get(DENOISE_FIELDS[0])), float(get(DENOISE_FIELDS[1]))),
            overrides=get("overrides") or "",
            seed=int(get("seed")),
            variations=int(get("variations")),
            islands=bool(get("islands")),
            faces=bool(get("faces")),
            server=(get("server") or "").strip(),
            token=(get("token") or "").strip(),
        )

    def override_map(self, preset=None) -> tuple[dict[str, str], list[str]]:
        """(the overrides the daemon gets, notes for the user).

        The free-form ones first (items separated by commas, semicolons or new lines, split and
        parsed by the thin client as `dermis --set` parses them), then the fields on top: feather
        and context when set, and each denoise field on the stage the daemon's ``preset`` info
        (a PresetInfo, None = not known) lists in that place. A preset with fewer denoise stages
        (lite has none) ignores the rest, with a note: a remembered value never breaks a preset."""
        try:
            out = overrides.parse_overrides(overrides.split_overrides(self.overrides))
        except overrides.OverrideError as e:
            raise SettingsError(f"Overrides: {e}") from None
        if self.feather >= 0:
            out["feather"] = f"{self.feather:g}"
        if self.context >= 0:
            out["context"] = str(self.context)
        notes = []
        stages = editors.denoise_stages(preset) if preset is not None else []
        for i, value in enumerate(self.denoise):
            if value <= 0:
                continue
            if i < len(stages):
                out[f"{stages[i]}.denoise"] = f"{value:g}"
            elif preset is not None:
                notes.append(f"Denoise {i + 1} was not used: preset '{preset.name}' has "
                             f"{len(stages) or 'no'} stage(s) with a denoise setting.")
        return out, notes

    def check(self) -> None:
        if not editors.SCALE_MIN <= self.scale <= editors.SCALE_MAX:
            raise SettingsError(f"Scale must be between {editors.SCALE_MIN:g} and {editors.SCALE_MAX:g}, "
                                f"not {self.scale:g}.")
        if self.output not in OUTPUTS:
            raise SettingsError(f"Output must be {' or '.join(OUTPUTS)}, not {self.output!r}.")
        if not 0 <= self.strength <= 100:
            raise SettingsError(f"Strength is a layer opacity from 0 to 100 %, not {self.strength}.")
        if not 1 <= self.variations <= editors.MAX_VARIATIONS:
            raise SettingsError(f"Variations must be 1 to {editors.MAX_VARIATIONS}, not {self.variations}.")
        for i, value in enumerate(self.denoise):
            if not 0 <= value <= 1:
                raise SettingsError(f"Denoise {i + 1} must be between 0 and 1 (0 keeps the preset's), "
                                    f"not {value:g}.")
        self.override_map()

    def seeds(self) -> list[int]:
        """The run's seeds: ``variations`` of them from ``seed`` (a new random one when -1)."""
        first = self.seed if self.seed >= 0 else random.randint(0, editors.SEED_MAX)
        return editors.variation_seeds(first, self.variations)

    def context_px(self, preset) -> int:
        """The context the daemon will use: the field, else the preset's."""
        return self.context if self.context >= 0 else int(editors.preset_defaults(preset)["context"])


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
    seed: int | None = None,
    preset=None,
):
    """The request for one part of one layer, in layer mode (the daemon returns region + alpha)."""
    settings.check()
    return client.JobRequest(
        pixels=pixels,
        width=width,
        height=height,
        channels=channels,
        bit_depth=bit_depth,
        preset=settings.preset,
        scale=settings.scale,
        seed=seed if seed is not None else (None if settings.seed < 0 else settings.seed),
        overrides=settings.override_map(preset)[0],
        mask=mask,
        output="layer",
        priority="editor",
        job_id=job_id or str(uuid.uuid4()),
        icc_profile=icc_profile,
        client_name=CLIENT_NAME,
        content=settings.output,
    )


def preset_info(c: client.DaemonClient, name: str):
    """The daemon's PresetInfo for ``name`` ('' = its default); None when it has no such preset
    (the job is then refused by the daemon, with its list of presets)."""
    info = c.info()
    wanted = name or info.default_preset
    return next((p for p in info.presets if p.name == wanted), None)


def progress_text(ev) -> str | None:
    """What the progress bar says for a daemon event (None: keep the current text): the thin
    client's words, and for a preview (GIMP cannot show a picture in its progress bar) which stage's
    look at the work in progress just arrived."""
    if ev.kind.value == "preview" and ev.preview is not None:
        stage = ev.preview.stage or ev.stage
        return f"preview{' after ' + stage if stage else ''} ({ev.preview.width}x{ev.preview.height})"
    return editors.event_text(ev)


class Reporter:
    """Turns events into progress calls, at most ``rate`` per second (each is a round trip to GIMP).

    With several jobs, ``job(i, n)`` before each one prefixes 'job i of n' and maps the fraction
    into that job's share of the bar."""

    def __init__(
        self,
        set_text: Callable[[str], None],
        set_fraction: Callable[[float], None],
        rate: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[Any], str | None] | None = None,
    ) -> None:
        self._set_text, self._set_fraction = set_text, set_fraction
        self._describe = describe or progress_text
        self._interval, self._clock = 1.0 / rate, clock
        self._last = -1e9
        self._text: str | None = None
        self._index, self._count = 0, 1
        self.messages: list[str] = []  # daemon notes worth showing once the job is done
        self.previews = 0

    def job(self, index: int, count: int) -> None:
        self._index, self._count = index, max(1, count)

    def _fraction(self, f: float) -> float:
        return (self._index + min(1.0, max(0.0, f))) / self._count

    def __call__(self, ev) -> None:
        kind = ev.kind.value
        if kind == "message" and ev.message:
            if ev.message not in self.messages:
                self.messages.append(ev.message)
            return
        if kind == "preview":
            self.previews += 1
        text = self._describe(ev)
        # stage changes and the end always show; step/tile ticks are throttled among themselves
        if kind == "progress":
            now = self._clock()
            if now - self._last < self._interval:
                return
            self._last = now
        if text:
            if self._count > 1:
                text = f"job {self._index + 1} of {self._count}: {text}"
            text = f"Dermis: {text}"
            if text != self._text:
                self._text = text
                self._set_text(text)
        if kind == "progress":
            self._set_fraction(self._fraction(ev.fraction))
        elif kind == "done":
            self._set_fraction(self._fraction(1.0))


def run_jobs(
    settings: Settings,
    requests: Sequence,
    reporter: Reporter | None = None,
    *,
    guard: bool = True,
    connect: Callable[[str | None, str | None], client.DaemonClient] = client.Client,
) -> list:
    """Submit every request (the daemon queues them), then follow each to its result, in order.

    While it waits, a separate guard process watches this one: GIMP cancels a plug-in's progress by
    killing the plug-in, and the guard then cancels the jobs in the daemon (see cancel_guard). A job
    that fails cancels the ones after it (the run's results are inserted together or not at all).
    Raises ``client.ClientError`` subclasses with the daemon's message. ``connect(address, token)``
    makes the connection.
    """
    ids = [r.job_id for r in requests]
    address, token = settings.server or None, settings.token or None
    watcher = None
    results = []
    try:
        with connect(address, token) as c:
            if guard:  # it cancels as this connection's client, the one that submits
                watcher = cancel_guard.spawn(ids, address, token, getattr(c, "client_id", None))
            submitted = []
            try:
                for r in requests:
                    submitted.append(c.submit(r))
                for i, job_id in enumerate(submitted):
                    if reporter is not None:
                        reporter.job(i, len(submitted))
                    results.append(c.follow(job_id, reporter))
            except client.ClientError:
                for job_id in submitted[len(results):]:
                    try:
                        c.cancel(job_id)
                    except client.ClientError:
                        pass  # it ended or the daemon is gone: nothing left to stop
                raise
    finally:
        if watcher is not None:
            watcher.finish()
    return results


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
    ``run_jobs`` follows a refine (the same cancel guard: killing the plug-in cancels the download,
    whose partial file the next download resumes). Returns the job's result (its notes in ``messages``)."""
    job_id = str(uuid.uuid4())
    address, token = settings.server or None, settings.token or None
    watcher = None
    try:
        with connect(address, token) as c:
            if guard:
                watcher = cancel_guard.spawn([job_id], address, token, getattr(c, "client_id", None))
            c.fetch_models(settings.preset, accept_licences=accept_licences, job_id=job_id,
                           client_name=CLIENT_NAME)
            return c.follow(job_id, on_event)
    finally:
        if watcher is not None:
            watcher.finish()


def explain(e: BaseException) -> str:
    """The client's message (it says what went wrong), plus the GIMP side of the fix."""
    return editors.explain(e, "gimp")
