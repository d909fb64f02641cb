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


# a separator only where the next item begins (``key=``): values may hold commas (a prompt does)
_NEXT_ITEM = re.compile(r"[,;\n]\s*(?=(?:[A-Za-z_][\w.-]*)?\s*=)")


def split_overrides(text: str) -> list[str]:
    """One text field of overrides ('a.b=1, c.d=2; e=3', or one per line) -> its items.

    A comma, semicolon or new line separates items only when a ``key=`` follows it, so every value
    `dermis upscale --set` takes can be typed here too, commas and all
    (``refine.prompt=a photo, natural skin; grain.strength=0.05``). A trailing separator is ignored."""
    items = [item.strip() for item in _NEXT_ITEM.split(text)]
    if items and items[-1][-1:] in (",", ";"):
        items[-1] = items[-1][:-1].strip()
    return [item for item in items if item]


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
