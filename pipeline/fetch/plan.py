"""Which weights a preset (or a list of roles) needs, which are found, and what a download would do.

``status`` answers `dermis models` (and GetServerInfo): one ``RoleStatus`` per weights key, with the
catalogue file in the chosen variant and the path the locator found, if any. ``plan`` turns the
missing ones into a ``FetchPlan``: files to download into a ComfyUI-layout models folder, and files the
user has to place by hand (no verified download, a whole folder, a format Dermis cannot load yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import recipes
from ..config import Config
from ..errors import InvalidParameter, MissingWeights
from ..models.catalogue import CatalogueFile, catalogue
from ..models.weights import WEIGHTS, WeightLocator
from ..stages import describe_weights


@dataclass
class RoleStatus:
    role: str  # the weights key
    entry: CatalogueFile | None  # the catalogue's file in the chosen variant (None: not catalogued)
    found: Path | None  # where the locator found it
    needed_by: list[str] = field(default_factory=list)  # "supir-srpo/supir", or "asked for"
    required: bool = False  # an enabled stage that is not optional needs it: the preset fails without it
    enabled: bool = False  # some enabled stage needs it (else only a stage that is off)

    @property
    def missing(self) -> bool:
        return self.found is None


@dataclass(frozen=True)
class FetchItem:
    role: str
    entry: CatalogueFile
    dest: Path  # the final path in the models folder


@dataclass(frozen=True)
class ManualItem:
    role: str
    entry: CatalogueFile | None
    reason: str  # one sentence: why it is not downloaded and where to get it


@dataclass(frozen=True)
class FetchPlan:
    root: Path  # the ComfyUI-layout models folder downloads go into
    downloads: tuple[FetchItem, ...]
    manual: tuple[ManualItem, ...]
    present: tuple[RoleStatus, ...]

    @property
    def approx_bytes(self) -> int:
        """What the downloads weigh by the catalogue (exact sizes come from the server when they start)."""
        return sum(i.entry.size_hint or 0 for i in self.downloads)

    @property
    def non_commercial(self) -> list[CatalogueFile]:
        return [i.entry for i in self.downloads if i.entry.non_commercial]


def status(targets: Sequence[str], locator: WeightLocator, variant: str | None = None) -> list[RoleStatus]:
    """One row per weights key ``targets`` need (preset names or weights keys; none = every preset)."""
    presets = recipes.presets()
    rows: dict[str, RoleStatus] = {}
    for target in targets or sorted(presets):
        if target in presets:
            _add_preset(rows, recipes.build(target), locator, variant)
        elif target in WEIGHTS:
            row = _row(rows, target, locator, variant)
            row.needed_by.append("asked for")
            row.required = row.enabled = True
        else:
            raise InvalidParameter(
                f"'{target}' is neither a preset ({', '.join(sorted(presets))}) nor a weights name "
                f"({', '.join(sorted(WEIGHTS))}).")
    return list(rows.values())


def _add_preset(rows: dict[str, RoleStatus], recipe: recipes.Recipe, locator: WeightLocator,
                variant: str | None) -> None:
    for stage, name, _path, _looked in describe_weights(recipe, locator):
        if name.startswith("(stage unavailable"):
            continue
        row = _row(rows, name, locator, variant)
        row.needed_by.append(f"{recipe.preset}/{stage.id}" + ("" if stage.enabled else " (off)"))
        row.enabled |= stage.enabled
        row.required |= stage.enabled and not stage.optional


def _row(rows: dict[str, RoleStatus], role: str, locator: WeightLocator, variant: str | None) -> RoleStatus:
    if role not in rows:
        found = locator.find_optional(role) if role in WEIGHTS else _as_path(role, locator)
        rows[role] = RoleStatus(role, catalogue().choose(role, variant), found)
    return rows[role]


def _as_path(name: str, locator: WeightLocator) -> Path | None:
    try:
        return locator.resolve(name)
    except MissingWeights:  # a file named in a recipe that is not there
        return None


def download_root(config: Config) -> Path:
    """Where downloads go unless told otherwise: the first ComfyUI models folder, else Dermis's own."""
    return config.comfy_models[0] if config.comfy_models else config.models_dir


def plan(rows: Sequence[RoleStatus], root: Path, variant: str | None = None) -> FetchPlan:
    """What to download for the missing rows that an enabled stage (or the user) asked for."""
    if variant and variant not in catalogue().variants():
        raise InvalidParameter(f"no file in the catalogue has the variant '{variant}'; known variants: "
                               f"{', '.join(catalogue().variants())}.")
    downloads: list[FetchItem] = []
    manual: list[ManualItem] = []
    for row in rows:
        if not row.missing or not row.enabled:
            continue
        entry = row.entry
        if entry is None:
            manual.append(ManualItem(row.role, None, "the catalogue lists no file for it; see `dermis doctor`."))
        elif entry.downloadable:
            downloads.append(FetchItem(row.role, entry, root / entry.relpath))
        else:
            manual.append(ManualItem(row.role, entry, manual_reason(entry, root)))
    return FetchPlan(root, tuple(downloads), tuple(manual), tuple(r for r in rows if not r.missing))


def manual_reason(entry: CatalogueFile, root: Path) -> str:
    """Why ``entry`` is not downloaded, and what the user does instead (one sentence)."""
    where = root / entry.relpath
    if not entry.supported:
        return (f"{entry.filename} is a format this version of Dermis cannot load yet; choose another "
                "variant.")
    if entry.comfy_folder.startswith(".."):
        return (f"{entry.filename} ships with ComfyUI ({entry.page_url}): point Dermis at a ComfyUI "
                f"models folder, or copy that folder to {root / 'tokenizers' / entry.filename}.")
    if entry.kind == "dir" and entry.source == "hf":
        include = f" --include '{entry.path}/*'" if entry.path else ""
        return (f"a whole folder: `hf download {entry.repo}{include} --local-dir DIR`, then place it as {where}.")
    return f"download it by hand from {entry.page_url} and save it as {where}."
