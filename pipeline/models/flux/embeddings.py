"""Timestep and guidance embeddings in float32, as ComfyUI computes them.

diffusers' ``FluxTransformer2DModel.forward`` multiplies the timestep and the guidance by 1000 *after*
casting them to the model dtype, so in bf16 a sigma of 0.5787 becomes 578 → 580 and 3.5 stays 3.5
only by luck; ComfyUI's FLUX (comfy/ldm/flux/model.py ``timestep_embedding(timesteps, 256,
time_factor=1000.0)``) builds the sinusoidal embedding from the float32 values and casts only the
embedding. ``exact_time_embedding(model)`` makes a diffusers model do the same: a forward pre-hook
keeps the float32 ``timestep``/``guidance`` arguments, and the model's ``time_text_embed`` uses those
(times 1000, like diffusers) instead of the rounded ones. Weights and state-dict keys are untouched.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch

_HOOK = "_dermis_exact_time_hook"
_STASH = "_dermis_exact_time"


def exact_time_embedding(model: torch.nn.Module, on: bool = True) -> None:
    """Switch float32 timestep/guidance embedding on (or back off) for a FLUX transformer."""
    emb = model.get_submodule("time_text_embed")
    handle = getattr(model, _HOOK, None)
    if on and handle is None:
        setattr(model, _HOOK, model.register_forward_pre_hook(_keep_float32, with_kwargs=True))
        emb.forward = MethodType(_exact_forward, emb)  # instance attribute: shadows the class's forward
    elif not on and handle is not None:
        handle.remove()
        delattr(model, _HOOK)
        emb.__dict__.pop("forward", None)
        emb.__dict__.pop(_STASH, None)


def _keep_float32(model: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    t, g = kwargs.get("timestep"), kwargs.get("guidance")
    exact = (None if t is None else t.float() * 1000, None if g is None else g.float() * 1000)
    setattr(model.get_submodule("time_text_embed"), _STASH, exact)


def _exact_forward(self: torch.nn.Module, timestep: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    t, g = getattr(self, _STASH, (None, None))
    if t is not None and t.shape == timestep.shape:
        timestep = t
    if len(rest) == 2 and g is not None and g.shape == rest[0].shape:  # (guidance, pooled)
        rest = (g, rest[1])
    return type(self).forward(self, timestep, *rest)
