"""The docker's choices (settings) and what the server's info offers; pure Python, no Qt, no Krita.

Settings persist as one JSON string in Krita's settings (kritarc, group "dermis"), so a broken or
older value never stops the plugin: unknown keys are ignored and bad values fall back to defaults.
Stage controls are not hard-coded: they come from the presets the running daemon reports, so a new
stage (e.g. face_restore) shows its toggle as soon as the daemon knows it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)  # 1 = refine in place (new layer); more = a new, larger document
SEED_MAX = 2**31 - 1  # what a QSpinBox holds; the daemon accepts up to 2^63-1
DEFAULT_PADDING = 128  # px of context read around a selection (presets use 64-96 + their feather)


def new_seed() -> int:
    return random.randint(0, SEED_MAX)


@dataclass
class Settings:
    address: str = ""  # "" = $DERMIS_ADDRESS, else the address the running daemon wrote down
    preset: str = ""  # "" = the daemon's default preset
    scale: float = 1.0
    seed: int = field(default_factory=new_seed)
    overrides: dict[str, str] = field(default_factory=dict)  # "refine.denoise": "0.25" (this preset)

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
        return s

    def choose_preset(self, name: str) -> None:
        """Switching presets drops the overrides: their stage ids belong to the old preset."""
        if name != self.preset:
            self.preset = name
            self.overrides = {}


@dataclass(frozen=True)
class Control:
    """One stage parameter the docker shows for the current preset."""

    key: str  # "refine.denoise", "face_restore.enabled"
    label: str
    kind: str  # "float" or "bool"
    default: str  # the preset's value, as the server reports it
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.05


def controls_for(preset: Any) -> list[Control]:
    """Denoise for every stage that has one; an on/off toggle for optional or disabled stages."""
    out: list[Control] = []
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


def _same(c: Control, value: str) -> bool:
    if c.kind == "float":
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


# what to add to an error the client reports, by its code
HINTS = {
    "unavailable": "Start the daemon with `dermis serve` (or check the address in the Dermis docker).",
    "unauthenticated": "The daemon's token was not found or is wrong: restart `dermis serve`, or set "
                       "DERMIS_TOKEN for Krita.",
    "dependency_missing": "Reinstall the plugin with `dermis install-plugin krita`: it adds grpcio and "
                          "protobuf for Krita's Python.",
    "missing_weights": "Press 'Download missing models…' in the Dermis docker, or choose the 'lite' preset.",
    "gated_model": "Then press 'Download missing models…' again.",
    "network_unavailable": "Press 'Download missing models…' again to resume.",
}
