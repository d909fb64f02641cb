"""Stages: one module per step of a recipe, all with the same small interface.

A stage module ``pipeline/stages/<kind>.py`` defines

- ``Params``: a frozen dataclass of its knobs with DESIGN.md's defaults;
- ``weights(params) -> list[str]`` (optional): registry keys or paths of the files it needs;
- ``COST`` (optional, default 1.0): its share of the job's progress bar;
- ``run(rgb, params, ctx) -> rgb``: float32 (H, W, 3) in [0, 1] in, same out (any size).

``resolve`` turns a recipe into checked stages before any work starts, so a missing file or a typo in
a parameter fails the job at once, naming every problem together.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter, MissingWeights, MissingWeightsGroup, StageUnavailable, quoted
from ..models.weights import WeightLocator
from ..recipes import Recipe, StageSpec

INT_LIMIT = 2**31  # integer parameters are counts and sizes: anything beyond is a typo or an attack


@dataclass(frozen=True)
class ResolvedStage:
    spec: StageSpec
    module: types.ModuleType
    params: Any
    weights: dict[str, Any]  # needed name -> resolved Path

    @property
    def cost(self) -> float:
        cost = getattr(self.module, "COST", 1.0)  # a number, or a function of the stage's Params
        if callable(cost):
            cost = cost(self.params)
        if not isinstance(cost, (int, float)):
            raise TypeError(f"stage {self.spec.kind}: COST must be a number, not {cost!r}")
        return float(cost)


@dataclass(frozen=True)
class Skipped:
    spec: StageSpec
    reason: str


def load_stage(kind: str) -> types.ModuleType:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise StageUnavailable(f"'{kind}' is not a valid stage name.")
    try:
        return importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{kind}":
            raise StageUnavailable(f"stage '{kind}' is not available in this version of Dermis.") from None
        raise StageUnavailable(
            f"stage '{kind}' needs the Python package '{e.name}', which is not installed."
        ) from None


def make_params(module: types.ModuleType, raw: Mapping[str, Any], stage_id: str) -> Any:
    cls = module.Params
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InvalidParameter(
            f"stage '{stage_id}' has no parameter {', '.join(quoted(u) for u in unknown[:5])}; "
            f"its parameters are: {', '.join(sorted(names))}."
        )
    values = {k: coerce(v, hints[k], f"{stage_id}.{k}") for k, v in raw.items()}
    try:
        params = cls(**values)
    except (TypeError, ValueError) as e:
        raise InvalidParameter(f"stage '{stage_id}': {e}") from None
    check = getattr(params, "validate", None)
    if check is not None:
        check()
    return params


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Turn a TOML value or a --set string into the type a Params field declares."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return coerce(value, a, key)
            except InvalidParameter as e:
                errors.append(str(e))
        raise InvalidParameter(errors[0] if errors else f"'{key}': invalid value {quoted(value)}.")
    if origin is typing.Literal:
        for a in args:
            if value == a or str(value).strip() == str(a):
                return a
        raise InvalidParameter(f"'{key}' must be one of {', '.join(map(str, args))}, not {quoted(value)}.")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
        elem = args[0] if args else str
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, elem, key) for v in items)
        if args and len(items) != len(args):
            raise InvalidParameter(f"'{key}' needs {len(args)} comma-separated values, not {quoted(value)}.")
        return tuple(coerce(v, a, key) for v, a in zip(items, args or [str] * len(items), strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InvalidParameter(f"'{key}' must be true or false, not {quoted(value)}.")
    if hint in (int, float):
        if isinstance(value, bool):
            raise InvalidParameter(f"'{key}' must be a number, not {quoted(value)}.")
        try:
            num = hint(value) if not isinstance(value, str) else hint(value.strip())
        except (ValueError, OverflowError):
            raise InvalidParameter(f"'{key}' must be {'an integer' if hint is int else 'a number'}, not {quoted(value)}.") from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise InvalidParameter(f"'{key}' must be an integer, not {quoted(value)}.")
        if hint is float and not (num == num and abs(num) != float("inf")):
            raise InvalidParameter(f"'{key}' must be a finite number, not {quoted(value)}.")
        if hint is int and not -INT_LIMIT <= num < INT_LIMIT:
            raise InvalidParameter(f"'{key}' must be an integer between -2^31 and 2^31-1, not {quoted(value)}.")
        return num
    if hint is str:
        return str(value)
    return value


def needed_weights(module: types.ModuleType, params: Any) -> list[str]:
    fn = getattr(module, "weights", None)
    return list(fn(params)) if fn else []


def resolve(
    recipe: Recipe, locator: WeightLocator
) -> tuple[list[ResolvedStage], list[Skipped]]:
    """Check every enabled stage: module present, parameters valid, weights found."""
    ready: list[ResolvedStage] = []
    skipped: list[Skipped] = []
    missing: list[MissingWeights] = []
    for spec in recipe.stages:
        if not spec.enabled:
            continue
        try:
            module = load_stage(spec.kind)
        except StageUnavailable as e:
            raise StageUnavailable(
                f"{e} Preset '{recipe.preset}' needs it; the 'lite' preset runs without it."
            ) from None
        params = make_params(module, spec.params, spec.id)
        found, lacking = {}, []
        for name in needed_weights(module, params):
            try:
                found[name] = locator.resolve(name)
            except MissingWeights as e:
                lacking.append(e)
        if lacking and spec.optional:
            skipped.append(Skipped(spec, f"{spec.id}: skipped, weights not found ({', '.join(e.key for e in lacking)})"))
            continue
        # two stages needing the same file (flux refine + final) report it once
        missing.extend(e for e in lacking if e.key not in {m.key for m in missing})
        ready.append(ResolvedStage(spec, module, params, found))
    if missing:  # one line per file; each front end adds how to get them
        raise MissingWeightsGroup(missing, preset=recipe.preset)
    return ready, skipped


def describe_weights(recipe: Recipe, locator: WeightLocator) -> list[tuple[StageSpec, str, Any, Sequence[str]]]:
    """For `dermis doctor`: (stage, weight name, found Path or None, places looked) per needed file."""
    rows: list[tuple[StageSpec, str, Any, Sequence[str]]] = []
    for spec in recipe.stages:
        try:
            module = load_stage(spec.kind)
            params = make_params(module, spec.params, spec.id)
        except (StageUnavailable, InvalidParameter) as e:
            rows.append((spec, f"(stage unavailable: {e})", None, ()))
            continue
        for name in needed_weights(module, params):
            try:
                path = locator.resolve(name)
                rows.append((spec, name, path, ()))
            except MissingWeights as e:
                rows.append((spec, name, None, e.looked))
    return rows
