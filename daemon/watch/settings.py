"""Job settings for a watched file: the folder's defaults, its ``dermis.toml``, the file's sidecar.

Later sources win: the command line (or the daemon's ``[[watch]]`` entry) < ``IN_DIR/dermis.toml`` <
``<name>.dermis.toml`` next to the image. Files dropped by other people or scripts are untrusted, so
only these keys are accepted, none of them a path:

    preset = "lite"
    scale = 2.0
    seed = 7
    region = "180,60,100,110"        # or [180, 60, 100, 110]
    format = "png"                   # png, tif, jpg, webp, or "same" (the input's format)
    [set]                            # like --set: recipe keys or <stage>.<param>
    "grain.strength" = 0.03

Settings are resolved once, when a file is claimed, and stored in the journal, so a restart resumes
with exactly the settings the file was claimed with.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pipeline
from pipeline import InvalidParameter

from ..jobs.recipe import build_recipe

ALLOWED_KEYS = ("preset", "scale", "seed", "region", "format", "set")
FORMATS = {"png": ".png", "tif": ".tif", "tiff": ".tif", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True)
class Settings:
    preset: str = "lite"
    overrides: tuple[str, ...] = ()  # "key=value" like --set; later ones win
    scale: float | None = None
    seed: int | None = None  # None: derived from the content hash, so a rerun gives the same result
    region: str | None = None  # "x,y,w,h"
    format: str = "auto"  # auto: .tif for TIFF inputs (keeps 16-bit + profile), .png for the rest

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        return cls(**{**raw, "overrides": tuple(raw.get("overrides", ()))})

    def recipe(self) -> pipeline.Recipe:
        return build_recipe(self.preset, self.overrides, scale=self.scale)

    def key(self) -> str:
        """Identity of the work: the same content with the same key is done once (re-drops skip).

        The built recipe is part of it, so editing a preset file makes re-dropped files count as new.
        """
        blob = json.dumps({"settings": asdict(self), "recipe": asdict(self.recipe())},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def output_suffix(self, input_name: str) -> str:
        if self.format == "auto":
            return ".tif" if Path(input_name).suffix.lower() in (".tif", ".tiff") else ".png"
        if self.format == "same":
            ext = Path(input_name).suffix.lower()
            return FORMATS.get(ext.lstrip("."), ".png")
        return FORMATS[self.format]


def base_settings(preset: str, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Settings:
    """The folder's defaults from the command line or daemon config (checked now, not per file)."""
    if isinstance(overrides, Mapping):
        overrides = [f"{k}={_text(v)}" for k, v in overrides.items()]
    s = Settings(preset=preset, overrides=tuple(overrides))
    s.recipe()  # raises UnknownPreset / InvalidParameter before the watcher starts
    return s


def read_toml(path: Path) -> dict[str, Any]:
    """A settings file, checked against the whitelist; InvalidParameter names the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"settings file {path.name} is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - set(ALLOWED_KEYS))
    if unknown:
        raise InvalidParameter(
            f"settings file {path.name}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(ALLOWED_KEYS)} (paths are never taken from settings files)."
        )
    return raw


def merge(base: Settings, raw: dict[str, Any], source: str) -> Settings:
    """Apply one settings file's values on top of ``base``."""
    changes: dict[str, Any] = {}
    if "preset" in raw:
        changes["preset"] = _typed(raw["preset"], str, source, "preset")
    if "scale" in raw:
        changes["scale"] = float(_typed(raw["scale"], (int, float), source, "scale"))
    if "seed" in raw:
        seed = _typed(raw["seed"], int, source, "seed")
        if not 0 <= seed < 2**63:
            raise InvalidParameter(f"{source}: seed must be between 0 and 2^63-1, not {seed}.")
        changes["seed"] = seed
    if "region" in raw:
        region = raw["region"]
        if isinstance(region, list):
            region = ",".join(str(_typed(v, int, source, "region")) for v in region)
        region = _typed(region, str, source, "region")
        pipeline.Region.parse(region)  # fail now, with the text the user wrote
        changes["region"] = region
    if "format" in raw:
        fmt = _typed(raw["format"], str, source, "format").lower()
        if fmt not in FORMATS and fmt not in ("auto", "same"):
            raise InvalidParameter(f"{source}: format must be one of auto, same, {', '.join(FORMATS)}.")
        changes["format"] = fmt
    if "set" in raw:
        table = _typed(raw["set"], dict, source, "set")
        changes["overrides"] = (*base.overrides, *(f"{k}={_text(v)}" for k, v in table.items()))
    return replace(base, **changes)


def resolve(base: Settings, folder_file: Path | None, sidecar: Path | None) -> Settings:
    """Folder defaults, then ``dermis.toml``, then the sidecar; the recipe is built to check it."""
    s = base
    for path in (folder_file, sidecar):
        if path is not None and path.is_file():
            s = merge(s, read_toml(path), path.name)
    s.recipe()
    return s


def seed_from_hash(sha256: str) -> int:
    return int(sha256[:15], 16) & 0x7FFFFFFF


def _text(value: Any) -> str:
    # TOML booleans arrive as True/False; the recipe parser reads "true"/"false".
    return str(value).lower() if isinstance(value, bool) else str(value)


def _typed(value: Any, typ, source: str, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, typ):
        raise InvalidParameter(f"{source}: '{key}' has the wrong type ({type(value).__name__}).")
    return value
