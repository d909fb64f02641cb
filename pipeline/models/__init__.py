"""Model weights: where they are (registry + locator), what stays loaded (cache), tiny test models.

One folder per model family (``flux/``, ``sdxl/``, ``supir/``, ``faces/``, ``upscale/``) with the same
file names where they apply: ``weights.py`` (the family's weight specs), ``arch.py`` (typed
architecture), ``load.py`` / ``keymap.py`` / ``convert.py`` (reading its files), ``tiny.py`` (random
weights in the real layouts). Shared machinery stays here: ``tensor_files`` (the one reading and
loading path), ``weights`` (registry + locator), ``cache``, ``placement``, ``spandrel_loader``, ``tiny``.
"""

from .cache import ModelCache
from .weights import WEIGHTS, WeightLocator, WeightSpec

__all__ = ["WEIGHTS", "ModelCache", "WeightLocator", "WeightSpec"]
