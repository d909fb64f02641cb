"""Recipes from what people type: ``key=value`` overrides (``--set``, watch-folder settings) parsed by
the one parser all clients share (proto/overrides.py), then ``pipeline.build``. A malformed item is an
``InvalidParameter`` here, so the CLI, the daemon and the watch folder report it like any bad setting.
"""

from __future__ import annotations

from collections.abc import Iterable

import pipeline
from pipeline import InvalidParameter
from proto.overrides import OverrideError, parse_overrides


def overrides_from(items: Iterable[str]) -> dict[str, str]:
    """['grain.strength=0.1', 'scale=3'] -> {'grain.strength': '0.1', 'scale': '3'}."""
    try:
        return parse_overrides(items)
    except OverrideError as e:
        raise InvalidParameter(str(e)) from None


def build_recipe(preset: str, items: Iterable[str] = (), *, scale: float | None = None) -> pipeline.Recipe:
    """``pipeline.build`` with the overrides as typed ``key=value`` items (later ones win)."""
    return pipeline.build(preset, overrides_from(items), scale=scale)
