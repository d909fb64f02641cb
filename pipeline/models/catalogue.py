"""The weight catalogue: every file each preset can use, where it comes from and under which licence.

The data is ``catalogue.toml`` next to this module (one ``[[file]]`` table per file and variant, with
how its source was verified); this module reads it into typed, checked ``CatalogueFile``s. What the
locator searches for is still each family's ``WeightSpec`` (patterns and folders): the catalogue says
which concrete file fills a role, and tests/test_models_catalogue.py checks that the locator finds every
supported catalogue file where the catalogue puts it.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..errors import InvalidParameter

CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")
CATALOGUE_ENV = "DERMIS_CATALOGUE"  # another catalogue file (a studio's own mirror; the download tests)

Use = Literal["default", "optional-stage", "alternative", "future"]
Source = Literal["hf", "url", "manual", "package"]
Evidence = Literal["publisher", "hf-page", "third-party", "none"]
_CHOICES: dict[str, tuple[str, ...]] = {
    "use": ("default", "optional-stage", "alternative", "future"),
    "source": ("hf", "url", "manual", "package"),
    "evidence": ("publisher", "hf-page", "third-party", "none"),
    "kind": ("file", "dir"),
}


@dataclass(frozen=True)
class CatalogueFile:
    """One file (or folder) in one variant; see the header of catalogue.toml for every field."""

    role: str
    variant: str
    use: Use
    presets: tuple[str, ...]
    filename: str
    kind: Literal["file", "dir"]
    licence: str
    non_commercial: bool
    gated: bool
    source: Source
    evidence: Evidence
    supported: bool
    verified: str
    comfy_folder: str = ""
    comfy_subfolder: str = ""
    inner: str = ""
    size: int | None = None
    approx_size: int | None = None
    sha256: str = ""
    repo: str = ""
    path: str = ""
    revision: str = "main"
    url: str = ""
    page: str = ""
    package: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.use in ("default", "optional-stage")

    @property
    def relpath(self) -> PurePosixPath:
        """Where it goes under a ComfyUI ``models/`` folder (folder/[subfolder/]filename)."""
        return PurePosixPath(self.comfy_folder, self.comfy_subfolder, self.filename)

    @property
    def downloadable(self) -> bool:
        """`dermis models get` can fetch it: one file from the Hub or a direct URL, in a format Dermis loads."""
        return self.supported and self.kind == "file" and self.source in ("hf", "url")

    @property
    def page_url(self) -> str:
        """Where a person reads about it (and downloads it by hand)."""
        if self.page:
            return self.page
        if self.source == "hf" and self.repo:
            return f"https://huggingface.co/{self.repo}"
        return self.url

    @property
    def size_hint(self) -> int | None:
        """Exact size when known, else the rounded one a page showed."""
        return self.size if self.size is not None else self.approx_size

    def size_text(self) -> str:
        if self.size is not None:
            return human_bytes(self.size)
        if self.approx_size is not None:
            return "~" + human_bytes(self.approx_size)
        return "?"

    def names(self) -> tuple[str, ...]:
        """What `--variant` accepts for it."""
        return (self.variant, *self.aliases)


class Catalogue:
    def __init__(self, files: list[CatalogueFile]) -> None:
        self.files = files

    def roles(self) -> list[str]:
        return sorted({f.role for f in self.files})

    def for_role(self, role: str) -> list[CatalogueFile]:
        return [f for f in self.files if f.role == role]

    def default(self, role: str) -> CatalogueFile | None:
        return next((f for f in self.for_role(role) if f.is_default), None)

    def choose(self, role: str, variant: str | None = None) -> CatalogueFile | None:
        """The role's file in ``variant`` (a variant name or alias); its default when ``variant`` is
        None or the role has no such variant."""
        if variant:
            named = [f for f in self.for_role(role) if variant in f.names()]
            if named:
                return named[0]
        return self.default(role)

    def variants(self) -> list[str]:
        return sorted({n for f in self.files for n in f.names()})


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as the Hub and file managers show sizes)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def catalogue() -> Catalogue:
    """The catalogue in use: ``$DERMIS_CATALOGUE`` if set, else the one shipped with Dermis (read once)."""
    return _cached(Path(os.environ.get(CATALOGUE_ENV) or CATALOGUE_PATH))


@functools.cache
def _cached(path: Path) -> Catalogue:
    return load(path)


def load(path: Path) -> Catalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidParameter(f"the weight catalogue {path} cannot be read: {e}") from None
    files = [_entry(table, path, i) for i, table in enumerate(raw.get("file", []), 1)]
    seen: set[tuple[str, str]] = set()
    for f in files:
        if (f.role, f.variant) in seen:
            raise InvalidParameter(f"{path}: role {f.role!r} lists variant {f.variant!r} twice.")
        seen.add((f.role, f.variant))
    return Catalogue(files)


def _entry(table: dict[str, Any], path: Path, number: int) -> CatalogueFile:
    where = f"{path}: [[file]] #{number}"
    known = {f.name: f for f in fields(CatalogueFile)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InvalidParameter(f"{where} has unknown keys {', '.join(unknown)}.")
    missing = sorted(n for n, f in known.items() if f.default is MISSING and n not in table)
    if missing:
        raise InvalidParameter(f"{where} lacks {', '.join(missing)}.")
    for key, choices in _CHOICES.items():
        if table[key] not in choices:
            raise InvalidParameter(f"{where}: {key} must be one of {', '.join(choices)}, not {table[key]!r}.")
    values = dict(table)
    for key in ("presets", "aliases"):
        if key in values:
            values[key] = tuple(values[key])
    sha = values.get("sha256", "")
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise InvalidParameter(f"{where}: sha256 must be 64 lowercase hex digits.")
    entry = CatalogueFile(**values)
    if entry.source == "hf" and not entry.repo:
        raise InvalidParameter(f"{where}: a Hub file needs repo (and path).")
    if entry.source in ("url", "manual") and not (entry.url or entry.page):
        raise InvalidParameter(f"{where}: a {entry.source} file needs url or page.")
    return entry
