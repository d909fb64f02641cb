"""Setting overrides written as ``key=value``: the one parser for every place a person types them.

`dermis upscale --set`, `dermis watch --set`, watch-folder settings files and the GIMP dialog's
Overrides field all go through ``parse_overrides``; the daemon checks the keys and converts the
values (pipeline/recipes.py: a recipe key or ``<stage>.<param>``). Standard library only and Python
3.10 syntax, because the plug-ins run it in the editors' Pythons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EXAMPLE = "grain.strength=0.05"


class OverrideError(ValueError):
    """An item that is not ``key=value``; the message says so, with the item and an example."""


def split_overrides(text: str) -> list[str]:
    """One text field of overrides ('a.b=1, c.d=2; e=3', or one per line) -> its items."""
    return [item.strip() for item in re.split(r"[,;\n]", text) if item.strip()]


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """['grain.strength=0.1', ' scale = 3 '] -> {'grain.strength': '0.1', 'scale': '3'}; later wins.

    Only the ``=`` is split on (a value may contain more); keys and values are stripped.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(f"a setting override is key=value (e.g. {EXAMPLE}), not {item.strip()!r}.")
        out[key.strip()] = value.strip()
    return out
