"""The docker's choices (settings) and what the server's info offers; pure Python, no Qt, no Krita.

Settings persist as one JSON string in Krita's settings (kritarc, group "dermis"), so a broken or
older value never stops the plugin: unknown keys are ignored and bad values fall back to defaults.
Preset controls are not hard-coded: they come from the presets the running daemon reports (its
feather and context, each stage's denoise and on/off), so a new stage shows its control as soon as
the daemon knows it. Defaults shared with the GIMP plug-in live in the thin client (proto/editors.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from .thin_client import editors

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)  # 1 = refine in place (new layer); more = a new, larger document
SEED_MAX = editors.SEED_MAX
CONTENTS = (editors.MODE_NORMAL, editors.MODE_DETAIL)


def new_seed() -> int:
    return random.randint(0, SEED_MAX)


@dataclass
class Settings:
    address: str = ""  # "" = $DERMIS_ADDRESS, else the address the running daemon wrote down
    preset: str = ""  # "" = the daemon's default preset
    scale: float = 1.0
    seed: int = field(default_factory=new_seed)
    overrides: dict[str, str] = field(default_factory=dict)  # "refine.denoise": "0.25", "feather": "8"
    content: str = editors.MODE_NORMAL  # "normal" (the refined skin) or "detail" (Grain Merge layer)
    strength: int = editors.STRENGTH_DEFAULT  # % opacity of the new layer (group)
    variations: int = 1  # seeds per run: that many layers, only the first visible
    islands: bool = True  # each separate part of the selection is a job of its own
    faces: bool = False  # each face the daemon finds in the selection is a job of its own

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        s = cls()
        try:
            raw = json.loads(text) if text else {}
        except ValueError:
            return s
        if not isinstance(raw, dict):
            return s
        if isinstance(raw.get("address"), str):
            s.address = raw["address"].strip()
        if isinstance(raw.get("preset"), str):
            s.preset = raw["preset"]
        if isinstance(raw.get("scale"), int | float) and float(raw["scale"]) in SCALES:
            s.scale = float(raw["scale"])
        if isinstance(raw.get("seed"), int) and 0 <= raw["seed"] <= SEED_MAX:
            s.seed = raw["seed"]
        if isinstance(raw.get("overrides"), dict):
            s.overrides = {str(k): str(v) for k, v in raw["overrides"].items()}
        if raw.get("content") in CONTENTS:
            s.content = raw["content"]
        if isinstance(raw.get("strength"), int) and 0 <= raw["strength"] <= 100:
            s.strength = raw["strength"]
        if isinstance(raw.get("variations"), int) and 1 <= raw["variations"] <= editors.MAX_VARIATIONS:
            s.variations = raw["variations"]
        for key in ("islands", "faces"):
            if isinstance(raw.get(key), bool):
                setattr(s, key, raw[key])
        return s

    def choose_preset(self, name: str) -> None:
        """Switching presets drops the overrides: their stage ids belong to the old preset."""
        if name != self.preset:
            self.preset = name
            self.overrides = {}


@dataclass(frozen=True)
class Control:
    """One preset setting the docker shows for the current preset."""

    key: str  # "feather", "refine.denoise", "face_restore.enabled"
    label: str
    kind: str  # "float", "int" or "bool"
    default: str  # the preset's value, as the server reports it
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.05
    suffix: str = ""


def controls_for(preset: Any) -> list[Control]:
    """The preset's feather and context (when the daemon reports them), the denoise of every stage
    that has one, and an on/off toggle for optional or disabled stages."""
    if preset is None:
        return []
    out: list[Control] = []
    defaults = editors.preset_defaults(preset)
    if defaults["feather"] or defaults["context"]:
        out.append(Control("feather", "Feather", "float", f"{defaults['feather']:g}", 0, 256, 1, " px"))
        out.append(Control("context", "Context", "int", str(defaults["context"]), 0, 1024, 8, " px"))
    for st in getattr(preset, "stages", ()) or ():
        params = dict(getattr(st, "params", {}) or {})
        if st.optional or not st.enabled:
            note = " (optional)" if st.optional else ""
            out.append(Control(f"{st.id}.enabled", f"{st.id}{note}", "bool",
                               "true" if st.enabled else "false"))
        if "denoise" in params:
            out.append(Control(f"{st.id}.denoise", f"{st.id} denoise", "float", str(params["denoise"])))
    return out


def effective_overrides(settings: Settings, controls: list[Control]) -> dict[str, str]:
    """The overrides to send: only keys the current preset has, and only when they differ."""
    known = {c.key: c for c in controls}
    out = {}
    for key, value in settings.overrides.items():
        c = known.get(key)
        if c is not None and not _same(c, value):
            out[key] = value
    return out


def context_px(settings: Settings, controls: list[Control]) -> int | None:
    """The context the job will use (the docker's value, else the preset's), for the read padding."""
    c = next((c for c in controls if c.key == "context"), None)
    if c is None:
        return None
    try:
        return int(float(settings.overrides.get("context", c.default)))
    except ValueError:
        return int(float(c.default))


def _same(c: Control, value: str) -> bool:
    if c.kind in ("float", "int"):
        try:
            return abs(float(value) - float(c.default)) < 1e-9
        except ValueError:
            return False
    return value.strip().lower() == c.default.strip().lower()


def find_preset(info: Any, name: str) -> Any:
    """The PresetInfo called ``name`` ('' = the daemon's default), or None."""
    if info is None:
        return None
    name = name or info.default_preset
    return next((p for p in info.presets if p.name == name), None)


def describe_server(info: Any) -> str:
    """'Connected: Dermis 0.1.0 on cuda:0 (18.2 of 24.0 GB free), 2 jobs queued'."""
    text = f"Connected: Dermis {info.version} on {info.device}"
    if info.vram_total:
        text += f" ({info.vram_free / 2**30:.1f} of {info.vram_total / 2**30:.1f} GB free)"
    if info.queue_length:
        text += f", {info.queue_length} job(s) queued"
    return text


def missing_weights(info: Any) -> list[str]:
    return [w.key for w in getattr(info, "weights", ()) if w.status == "missing"]


def describe_missing(info: Any) -> str:
    keys = missing_weights(info)
    if not keys:
        return ""
    return ("Missing weights: " + ", ".join(keys)
            + ". Presets that need them will fail; 'lite' needs none.")
