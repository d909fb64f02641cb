"""Model weights: where they are (registry + locator), what stays loaded (cache), tiny test models."""

from .cache import ModelCache
from .weights import WEIGHTS, WeightLocator, WeightSpec, register

__all__ = ["WEIGHTS", "ModelCache", "WeightLocator", "WeightSpec", "register"]
