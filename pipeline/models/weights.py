"""Where each model file is: a registry of weight specs and a locator that searches for them.

Every weight a stage can use has a key (``skin_detail``, ``sdxl``, ``flux_transformer``…). The locator
looks, in order, at the path configured under ``[weights]``, then in each ComfyUI ``models/`` tree
(``--comfy-models``) and Dermis's own models folder, in the subfolders ComfyUI users keep such files in
(one level of sub-subfolders too). Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import Config
from ..errors import MissingWeights

Kind = Literal["file", "dir", "any"]


@dataclass(frozen=True)
class WeightSpec:
    key: str
    description: str
    folders: tuple[str, ...]  # ComfyUI models/ subfolders, searched in this order
    patterns: tuple[str, ...]  # file (or folder) name globs, most specific first
    kind: Kind = "file"
    license: str = ""


WEIGHTS: dict[str, WeightSpec] = {}


def register(spec: WeightSpec) -> WeightSpec:
    WEIGHTS[spec.key] = spec
    return spec


register(
    WeightSpec(
        key="skin_detail",
        description="1x-ITF-SkinDiffDetail-Lite-v1, a 1x ESRGAN (32nf/12nb) skin detail model",
        folders=("upscale_models", "ESRGAN"),
        patterns=(
            "1x-ITF-SkinDiffDetail-Lite-v1.pth",
            "1x-ITF-SkinDiffDetail-Lite-v1.safetensors",
            "*SkinDiffDetail*.pth",
            "*SkinDiffDetail*.safetensors",
        ),
        license="CC-BY-NC-SA-4.0 (non-commercial)",
    )
)


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
        for root in self.roots():
            for folder in spec.folders:
                base = root / folder
                if not base.is_dir():
                    continue
                for pattern in spec.patterns:
                    hits = sorted(base.glob(pattern)) + sorted(base.glob(f"*/{pattern}"))
                    hits = [h for h in hits if _matches_kind(h, spec.kind) and not h.name.startswith(".")]
                    if hits:
                        return hits[0]
        return None

    def find(self, key: str) -> Path:
        found = self.find_optional(key)
        if found is None:
            spec = self.spec(key)
            hint = (
                f"Put the file in one of those folders, set weights.{key} in the config "
                f"({self.config.path or 'see `dermis doctor`'}), or pass --comfy-models DIR."
            )
            raise MissingWeights(key, spec.description, self.looked_in(key), hint=hint)
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


def _known_keys() -> str:
    return "Known weights: " + ", ".join(sorted(WEIGHTS)) + "."
