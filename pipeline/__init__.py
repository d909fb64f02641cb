"""Dermis pipeline: the library. No grpc, no editor imports.

Public door: everything the CLI, the daemon and the benchmarks use is re-exported here.
"""

from .config import Config, load_config
from .errors import (
    Cancelled,
    CorruptImage,
    DermisError,
    ImageTooLarge,
    InvalidInput,
    InvalidParameter,
    MissingWeights,
    OutOfMemory,
    StageUnavailable,
    UnknownPreset,
    UnsupportedImage,
    WrongWeights,
)
from .images import Image
from .models import ModelCache, WeightLocator
from .progress import CancelToken, Progress, ProgressFn
from .recipes import DEFAULT_PRESET, Recipe, StageSpec, build, presets
from .regions import Region
from .run import RunResult, run

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PRESET",
    "CancelToken",
    "Cancelled",
    "Config",
    "CorruptImage",
    "DermisError",
    "Image",
    "ImageTooLarge",
    "InvalidInput",
    "InvalidParameter",
    "MissingWeights",
    "ModelCache",
    "OutOfMemory",
    "Progress",
    "ProgressFn",
    "Recipe",
    "Region",
    "RunResult",
    "StageSpec",
    "StageUnavailable",
    "UnknownPreset",
    "UnsupportedImage",
    "WeightLocator",
    "WrongWeights",
    "build",
    "load_config",
    "presets",
    "run",
]
