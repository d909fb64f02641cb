"""What a weights file is and where ComfyUI users keep it: one ``WeightSpec`` per registry key.

Each model family lists its specs in its own ``<family>/weights.py``; ``pipeline.models.weights``
collects them into the one registry the locator searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["file", "dir", "any"]


@dataclass(frozen=True)
class WeightSpec:
    key: str  # the name presets, ``--set`` and the config's ``[weights]`` use
    description: str
    folders: tuple[str, ...]  # ComfyUI models/ subfolders, searched in this order
    patterns: tuple[str, ...]  # file (or folder) name globs, most specific first
    kind: Kind = "file"
    license: str = ""
