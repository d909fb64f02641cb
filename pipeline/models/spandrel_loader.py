"""Load any image-to-image model spandrel knows (ESRGAN, Compact, SwinIR, DAT, HAT, …) safely.

The state dict is read by us (``tensor_files.read_state_dict``: ``torch.load(weights_only=True)`` or
safetensors, never TorchScript or a full unpickler), then handed to spandrel to detect the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import WrongWeights
from .tensor_files import read_state_dict

if TYPE_CHECKING:
    from spandrel import ArchRegistry, ImageModelDescriptor


def load_image_model(path: Path, device: torch.device, dtype: torch.dtype, *, registry: ArchRegistry | None = None,
                     expected: str = "a model architecture spandrel recognises") -> ImageModelDescriptor:
    """An eval-mode spandrel ImageModelDescriptor on ``device``, in ``dtype`` where the arch allows.

    ``registry`` (a spandrel ArchRegistry) limits which architectures are accepted (the face stage takes
    only face restorers); ``expected`` names them in the error for any other file."""
    import spandrel

    sd = spandrel.canonicalize_state_dict(read_state_dict(path))
    try:
        loader = spandrel.ModelLoader(device="cpu", **({"registry": registry} if registry is not None else {}))
        desc = loader.load_from_state_dict(sd)
    except spandrel.UnsupportedModelError:
        raise WrongWeights(path, f"is not {expected}.") from None
    except (KeyError, RuntimeError, ValueError, AssertionError) as e:
        raise WrongWeights(path, f"looks like a known architecture but does not load ({e}).") from None
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise WrongWeights(path, f"is a {type(desc).__name__}, not an image-to-image model.")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise WrongWeights(
            path, f"takes {desc.input_channels} and gives {desc.output_channels} channels; RGB models only."
        )
    if dtype == torch.bfloat16 and not desc.supports_bfloat16:
        dtype = torch.float16 if desc.supports_half else torch.float32
    elif dtype == torch.float16 and not desc.supports_half:
        dtype = torch.float32
    desc.to(device)
    desc.model.to(dtype)
    desc.eval()
    return desc
