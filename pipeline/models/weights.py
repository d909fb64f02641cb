"""Where each model file is: the registry of every family's weight specs and a locator that searches for them.

Every weight a stage can use has a key (``skin_detail``, ``sdxl``, ``flux_transformer``…). The locator
looks, in order, at the path configured under ``[weights]``, then in each ComfyUI ``models/`` tree
(``--comfy-models``) and Dermis's own models folder, in the subfolders ComfyUI users keep such files in
(one level of sub-subfolders too). Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..config import Config
from ..errors import MissingWeights
from .catalogue import catalogue
from .faces.weights import SPECS as FACES
from .flux.weights import SPECS as FLUX
from .sdxl.weights import SPECS as SDXL
from .specs import Kind, WeightSpec
from .supir.weights import SPECS as SUPIR
from .upscale.weights import SPECS as UPSCALE


def _registry(*tables: tuple[WeightSpec, ...]) -> dict[str, WeightSpec]:
    out: dict[str, WeightSpec] = {}
    for spec in (s for table in tables for s in table):
        if spec.key in out:
            raise ValueError(f"the weights key {spec.key!r} is listed by two families")
        out[spec.key] = spec
    return out


# the one registry: every family's table, by key
WEIGHTS: dict[str, WeightSpec] = _registry(UPSCALE, FACES, SDXL, SUPIR, FLUX)

__all__ = ["WEIGHTS", "Kind", "WeightLocator", "WeightSpec"]


class WeightLocator:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()

    def roots(self) -> list[Path]:
        return [*self.config.comfy_models, self.config.models_dir]

    def spec(self, key: str) -> WeightSpec:
        try:
            return WEIGHTS[key]
        except KeyError:
            raise MissingWeights(key, "an unknown weights name", [], hint=_known_keys()) from None

    def looked_in(self, key: str) -> list[str]:
        """Human-readable list of the places ``find`` searches, for error messages and doctor."""
        spec = self.spec(key)
        places = []
        if key in self.config.weights:
            places.append(f"{self.config.weights[key]} (configured as weights.{key})")
        for root in self.roots():
            for folder in spec.folders:
                places.append(f"{root / folder}/[*/]{{{', '.join(spec.patterns)}}}")
        return places

    def find_optional(self, key: str) -> Path | None:
        spec = self.spec(key)
        configured = self.config.weights.get(key)
        if configured is not None:
            return configured if _matches_kind(configured, spec.kind) else None
        return next((path for path, _why in self.matches(key)), None)

    def matches(self, key: str) -> Iterator[tuple[Path, str]]:
        """Every file the search finds for ``key``, in the order it prefers them, with the folder and
        pattern that found it (``find`` takes the first; ``dermis doctor`` lists them all)."""
        spec = self.spec(key)
        seen: set[Path] = set()
        for root in self.roots():
            for folder in spec.folders:
                base = root / folder
                if not base.is_dir():
                    continue
                for pattern in spec.patterns:
                    hits = sorted(base.glob(pattern)) + sorted(base.glob(f"*/{pattern}"))
                    for h in hits:
                        if _matches_kind(h, spec.kind) and not h.name.startswith(".") and h not in seen:
                            seen.add(h)
                            yield h, f"matches {pattern} in {base}"

    def find(self, key: str) -> Path:
        found = self.find_optional(key)
        if found is None:
            spec = self.spec(key)
            raise MissingWeights(key, spec.description, self.looked_in(key), expected=expected_file(key))
        return found

    def resolve(self, name_or_path: str) -> Path:
        """A registry key, or a path to a file (absolute, or relative to a models root)."""
        if name_or_path in WEIGHTS:
            return self.find(name_or_path)
        p = Path(name_or_path).expanduser()
        candidates = [p] if p.is_absolute() else [p, *(r / p for r in self.roots())]
        for c in candidates:
            if c.exists():
                return c
        raise MissingWeights(
            name_or_path, "a model file named in the recipe", [str(c) for c in candidates],
            hint=_known_keys(),
        )


def _matches_kind(path: Path, kind: Kind) -> bool:
    if kind == "file":
        return path.is_file()
    if kind == "dir":
        return path.is_dir()
    return path.exists()


def expected_file(key: str) -> str:
    """The file that fills ``key`` and where it goes, from the catalogue's default for it:
    'checkpoints/sd_xl_base_1.0_0.9vae.safetensors (6.9 GB)'; '' when the catalogue has none."""
    entry = catalogue().default(key)
    if entry is None or entry.source == "package":
        return ""
    if entry.kind == "dir":
        where = f"{entry.relpath}/{entry.inner + '/' if entry.inner else ''}"
        return f"the folder {where}" + (" (ships with ComfyUI)" if entry.comfy_folder.startswith("..") else "")
    return f"{entry.relpath} ({entry.size_text()})"


def _known_keys() -> str:
    return "Known weights: " + ", ".join(sorted(WEIGHTS)) + "."
