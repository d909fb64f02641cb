"""Load any image-to-image model spandrel knows (ESRGAN, Compact, SwinIR, DAT, HAT, …) safely.

The state dict is read by us (``torch.load(weights_only=True)`` or safetensors, never TorchScript or a
full unpickler), then handed to spandrel to detect the architecture.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import WrongWeights


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .pth/.pt/.ckpt/.bin (weights only) or .safetensors file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".ckpt", ".bin"):
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise WrongWeights(path, f"unknown model file type '{suffix}' (use .pth or .safetensors).")
    except WrongWeights:
        raise
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln), "")
        if detail:  # a pickle that wants to import and call something: never let it
            raise WrongWeights(
                path, f"contains Python objects other than tensors, so it is not loaded for safety ({detail})."
            ) from None
        raise WrongWeights(path, "cannot be read as model weights (not a PyTorch checkpoint).") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise WrongWeights(path, f"cannot be read as model weights ({e}).") from None
    if not isinstance(sd, dict):
        raise WrongWeights(path, f"holds a {type(sd).__name__}, not a dictionary of tensors.")
    return sd


def load_image_model(path: Path, device: torch.device, dtype: torch.dtype, *, registry=None,
                     expected: str = "a model architecture spandrel recognises"):
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
