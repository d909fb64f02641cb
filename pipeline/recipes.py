"""Recipes: an ordered list of stages with their parameters, built from a preset plus overrides.

Presets are TOML files (``pipeline/presets/*.toml`` and the user's ``<config dir>/presets``):

    name = "lite"
    label = "lite"
    scale = 2.0
    [[stage]]
    id = "grain"        # unique within the recipe; overrides address it: --set grain.strength=0.1
    kind = "grain"      # the module pipeline/stages/<kind>.py
    strength = 0.02     # every other key is a parameter of that stage

``build`` is a pure function of its input; stage parameters are checked against each stage's Params
when the recipe is resolved for a run (``pipeline.stages.resolve``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from .errors import InvalidParameter, UnknownPreset, quoted

DEFAULT_PRESET = "supir-srpo"
# Ranges of the recipe-level settings (docs/daemon.md): the blend's cost grows with the feather at
# output scale, so that product is bounded too.
SCALE_RANGE = (0.25, 8.0)
MAX_CONTEXT = 1024  # px of surroundings around a region
MAX_FEATHER = 256.0  # px at input scale
MAX_FEATHER_OUT = 512.0  # px: feather x scale, the edge's softness in the output
BUILTIN_DIR = Path(__file__).parent / "presets"
_RECIPE_KEYS = {"scale": float, "context": int, "feather": float}
_STAGE_META = ("id", "kind", "enabled", "optional")


@dataclass(frozen=True)
class StageSpec:
    id: str
    kind: str
    enabled: bool = True
    optional: bool = False  # skip (and say so) when its weights are missing, instead of failing
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    preset: str
    label: str
    description: str
    scale: float
    stages: tuple[StageSpec, ...]
    context: int = 64  # px of surroundings processed around a region
    feather: float = 16.0  # px: softness of the edge where a region's result meets the image
    aliases: tuple[str, ...] = ()

    def layer_name(self, seed: int, *, detail: bool = False) -> str:
        return f"Dermis {'detail ' if detail else ''}({self.label}, {seed})"

    def stage(self, stage_id: str) -> StageSpec:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise InvalidParameter(
            f"preset '{self.preset}' has no stage {quoted(stage_id)}; its stages are: "
            + ", ".join(s.id for s in self.stages)
        )


def preset_dirs() -> list[Path]:
    return [BUILTIN_DIR, Path(platformdirs.user_config_dir("dermis")) / "presets"]


def presets() -> dict[str, Recipe]:
    """Every preset by name (user presets override built-in ones with the same name)."""
    found: dict[str, Recipe] = {}
    for d in preset_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                r = load_preset_file(f)
                found[r.preset] = r
    return found


def load_preset_file(path: Path) -> Recipe:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"preset file {path} is not valid TOML: {e}") from None
    return _from_raw(raw, source=str(path))


def _from_raw(raw: Mapping[str, Any], source: str) -> Recipe:
    try:
        name = str(raw["name"])
        stages = []
        for s in raw.get("stage", []):
            sid, kind = str(s["id"]), str(s.get("kind", s["id"]))
            params = {k: v for k, v in s.items() if k not in _STAGE_META}
            stages.append(StageSpec(sid, kind, bool(s.get("enabled", True)),
                                    bool(s.get("optional", False)), params))
    except KeyError as e:
        raise InvalidParameter(f"preset {source} lacks the key {e}.") from None
    ids = [s.id for s in stages]
    if len(set(ids)) != len(ids):
        raise InvalidParameter(f"preset {source} repeats a stage id: {ids}.")
    return Recipe(
        preset=name,
        label=str(raw.get("label", name)),
        description=str(raw.get("description", "")),
        scale=float(raw.get("scale", 2.0)),
        stages=tuple(stages),
        context=int(raw.get("context", 64)),
        feather=float(raw.get("feather", 16.0)),
        aliases=tuple(raw.get("aliases", ())),
    )


def build(
    preset: str = DEFAULT_PRESET,
    overrides: Mapping[str, Any] | None = None,
    *,
    scale: float | None = None,
) -> Recipe:
    """The preset with overrides applied: recipe keys (scale, context, feather) or stage.param.

    ``overrides`` maps keys to values (typed, or text that is converted here); text a person typed
    as ``key=value`` is split by proto/overrides.py first, the one parser for it.
    """
    table = presets()
    recipe = table.get(preset) or next((r for r in table.values() if preset in r.aliases), None)
    if recipe is None:
        raise UnknownPreset(f"unknown preset {quoted(preset)}; available: {', '.join(sorted(table))}.")
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, Mapping):
        raise TypeError("overrides maps setting keys to values; split key=value text with "
                        "proto.overrides.parse_overrides first.")
    top: dict[str, Any] = {}
    per_stage: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if not dot:
            if head not in _RECIPE_KEYS:
                raise InvalidParameter(
                    f"unknown setting {quoted(key)}; use one of {', '.join(_RECIPE_KEYS)} or <stage>.<param>."
                )
            top[head] = _coerce_simple(value, _RECIPE_KEYS[head], key)
        else:
            recipe.stage(head)  # raises with the list of stage ids
            per_stage.setdefault(head, {})[rest] = value
    if scale is not None:
        top["scale"] = float(scale)
    stages = []
    for s in recipe.stages:
        changes = per_stage.get(s.id, {})
        enabled, optional = s.enabled, s.optional
        params = dict(s.params)
        for k, v in changes.items():
            if k == "enabled":
                enabled = _coerce_simple(v, bool, f"{s.id}.enabled")
            elif k == "optional":
                optional = _coerce_simple(v, bool, f"{s.id}.optional")
            else:
                params[k] = v
        stages.append(replace(s, enabled=enabled, optional=optional, params=params))
    recipe = replace(recipe, stages=tuple(stages), **top)
    check_ranges(recipe)
    return recipe


def check_ranges(recipe: Recipe) -> None:
    """Scale, context and feather within their documented ranges (NaN and infinities fail too)."""
    lo, hi = SCALE_RANGE
    if not lo <= recipe.scale <= hi:  # False for NaN
        raise InvalidParameter(f"scale must be between {lo:g} and {hi:g}, not {recipe.scale}.")
    if not 0 <= recipe.context <= MAX_CONTEXT:
        raise InvalidParameter(f"context must be between 0 and {MAX_CONTEXT} px, not {recipe.context}.")
    if not 0 <= recipe.feather <= MAX_FEATHER:
        raise InvalidParameter(f"feather must be between 0 and {MAX_FEATHER:g} px, not {recipe.feather}.")
    if recipe.feather * recipe.scale > MAX_FEATHER_OUT:
        raise InvalidParameter(
            f"feather {recipe.feather:g} px at scale {recipe.scale:g} is a {recipe.feather * recipe.scale:g} px "
            f"edge in the result; at most {MAX_FEATHER_OUT:g} px are allowed (lower the feather).")


def _coerce_simple(value: Any, typ: type, key: str) -> Any:
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        return typ(text)
    except (ValueError, OverflowError):
        raise InvalidParameter(f"{quoted(key)} must be {typ.__name__}, not {quoted(value)}.") from None
