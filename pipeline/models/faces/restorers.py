"""Face restorers, loaded through spandrel: GFPGAN v1.3/v1.4 and CodeFormer.

GFPGAN's architecture is in ``spandrel`` (Apache-2.0 code, Apache-2.0 weights); CodeFormer's is in
``spandrel_extra_arches`` because CodeFormer (code and weights) is under the S-Lab License 1.0, which
forbids commercial use. Only these two architectures are accepted here (a local spandrel registry), so
an upscaler dropped into ``facerestore_models/`` fails with a clear message instead of "restoring" the
face crop as a 1x upscale.

Both take an aligned 512² face in -1..1 and return one in -1..1, as in their own inference scripts and
ComfyUI's face restore nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXPECTED = ("a GFPGAN face restorer (needs the keys toRGB.0.weight, stylegan_decoder.style_mlp.1.weight) "
            "or a CodeFormer one (position_emb, idx_pred_layer.1.weight, quantize.embedding.weight, "
            "ft_layers.0.self_attn.in_proj_weight, encoder.blocks.0.weight)")


def face_registry() -> Any:
    """A spandrel ArchRegistry holding only the face restorers."""
    import spandrel
    from spandrel_extra_arches import EXTRA_REGISTRY

    reg = spandrel.ArchRegistry()
    reg.add(spandrel.MAIN_REGISTRY["GFPGAN"], EXTRA_REGISTRY["CodeFormer"])
    return reg


@dataclass
class FaceRestorer:
    """A loaded face model; ``restore`` takes and gives aligned 512² RGB crops in 0..1."""

    desc: Any  # spandrel ImageModelDescriptor
    path: Path

    @property
    def arch(self) -> str:
        return str(self.desc.architecture.id)

    @property
    def size(self) -> int:
        return 512  # both nets are built for 512² (GFPGAN's out_size, CodeFormer's 16x16 latent)

    def restore(self, crop: np.ndarray, *, fidelity: float = 0.5, seed: int = 0) -> np.ndarray:
        model = self.desc.model
        param = next(model.parameters())
        x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]
        x = x.to(param.device, param.dtype) * 2 - 1
        # GFPGAN draws fresh StyleGAN noise every call (its own default): seed it so a job reproduces
        devices = [param.device.index or 0] if param.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if self.arch == "CodeFormer":
                # w: 0 = the codebook's face (strongest prior), 1 = keep the input's features
                out = model(x, weight=float(fidelity))[0]
            else:
                out = model(x, return_rgb=False)[0]
        out = ((out.float() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32)
