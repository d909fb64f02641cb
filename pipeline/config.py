"""Where the user's model files are, and the few limits they can change.

A TOML file (``$DERMIS_CONFIG``, ``--config``, or the platform's user config folder) names model files
or folders directly under ``[weights]`` and/or points at ComfyUI ``models/`` trees, which are used as is:

    comfy_models = ["~/ComfyUI/models"]
    device = "auto"

    [weights]
    skin_detail = "~/models/1x-ITF-SkinDiffDetail-Lite-v1.pth"

    [limits]
    max_pixels = 89478485        # input images
    max_work_pixels = 37748736   # the canvas a diffusion stage (SUPIR) works on

Other sections (``[daemon]``, ``[[watch]]``) belong to the daemon and are kept as raw tables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from .errors import InvalidParameter
from .images import DEFAULT_MAX_PIXELS

CONFIG_ENV = "DERMIS_CONFIG"
# SUPIR enlarges its canvas to a short side of 1024 px and works on all of it: 6144² (37.7 MP, a 4x
# upscale of 1536²) is far beyond what a 24 GB card samples in reasonable time; a 30x2000 target would
# otherwise become a 1024x68288 canvas
DEFAULT_MAX_WORK_PIXELS = 6144 * 6144
COMFY_ENV = "DERMIS_COMFY_MODELS"
APP = "dermis"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_models_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP)) / "models"


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    comfy_models: tuple[Path, ...] = ()
    models_dir: Path = field(default_factory=default_models_dir)
    weights: dict[str, Path] = field(default_factory=dict)
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_output_pixels: int = 4 * DEFAULT_MAX_PIXELS
    max_work_pixels: int = DEFAULT_MAX_WORK_PIXELS  # the largest canvas a diffusion stage works on
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        return self.raw.get(name, {})

    def with_comfy_models(self, dirs: Sequence[str | os.PathLike[str]]) -> Config:
        """Command-line ``--comfy-models`` folders come first, then the configured ones."""
        extra = tuple(Path(d).expanduser().resolve() for d in dirs)
        return replace(self, comfy_models=extra + tuple(p for p in self.comfy_models if p not in extra))


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    comfy_models: Sequence[str | os.PathLike[str]] = (),
) -> Config:
    """Read the config. An explicit path (or $DERMIS_CONFIG) must exist; the default one may not."""
    explicit = path or os.environ.get(CONFIG_ENV)
    cfg_path = Path(explicit).expanduser() if explicit else default_config_path()
    if cfg_path.exists():
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InvalidParameter(f"config file {cfg_path} is not valid TOML: {e}") from None
        cfg = _from_raw(raw, cfg_path)
    elif explicit:
        raise InvalidParameter(f"config file {cfg_path} does not exist.")
    else:
        cfg = Config()
    env_dirs = [d for d in os.environ.get(COMFY_ENV, "").split(os.pathsep) if d]
    return cfg.with_comfy_models([*comfy_models, *env_dirs])


def _from_raw(raw: dict[str, Any], path: Path) -> Config:
    base = path.parent

    def p(v: Any, key: str) -> Path:
        if not isinstance(v, str):
            raise InvalidParameter(f"{path}: '{key}' must be a path string.")
        q = Path(v).expanduser()
        return q if q.is_absolute() else (base / q).resolve()

    comfy = raw.get("comfy_models", [])
    comfy = [comfy] if isinstance(comfy, str) else comfy
    weights = raw.get("weights", {})
    if not isinstance(weights, dict):
        raise InvalidParameter(f"{path}: [weights] must be a table of name = path.")
    limits = raw.get("limits", {})
    max_pixels = int(limits.get("max_pixels", DEFAULT_MAX_PIXELS))
    return Config(
        path=path,
        comfy_models=tuple(p(d, "comfy_models") for d in comfy),
        models_dir=p(raw["models_dir"], "models_dir") if "models_dir" in raw else default_models_dir(),
        weights={k: p(v, f"weights.{k}") for k, v in weights.items()},
        device=str(raw.get("device", "auto")),
        max_pixels=max_pixels,
        max_output_pixels=int(limits.get("max_output_pixels", 4 * max_pixels)),
        max_work_pixels=int(limits.get("max_work_pixels", DEFAULT_MAX_WORK_PIXELS)),
        raw=raw,
    )
