"""Tiny spandrel image models in the real file layouts: the SkinDiffDetail ESRGAN (narrower) and a
Real-ESRGAN Compact 4x, in ``upscale_models/`` as ComfyUI keeps them."""

from __future__ import annotations

from pathlib import Path

import torch


def esrgan_state_dict(num_filters: int = 32, num_blocks: int = 12, scale: int = 1,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """An ESRGAN (RRDBNet) in the old key layout (``model.0.weight``, ``model.1.sub.N.RDB1…``) that the
    SkinDiffDetail file uses."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=scale)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def compact_state_dict(num_feat: int = 16, num_conv: int = 4, upscale: int = 4, seed: int = 0,
                       identity: bool = False) -> dict[str, torch.Tensor]:
    """A Real-ESRGAN SRVGGNetCompact (``body.N.weight``). ``identity=True`` zeroes the last conv, so
    the net returns its nearest-upsampled input exactly (a tiling test model)."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=upscale)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    if identity:
        last = max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
        sd[f"body.{last}.weight"].zero_()
        sd[f"body.{last}.bias"].zero_()
    return sd


def build_upscale(root: Path) -> dict[str, Path]:
    folder = root / "upscale_models"
    folder.mkdir(parents=True, exist_ok=True)
    skin = folder / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
    # same architecture and key layout as the real file, narrower so CPU runs stay fast
    torch.save(esrgan_state_dict(num_filters=8, num_blocks=2, scale=1, seed=1), skin)
    compact = folder / "4x-tiny-Compact.pth"
    torch.save({"params": compact_state_dict(seed=2)}, compact)  # BasicSR's {"params": …} wrapper
    return {"skin_detail": skin, "compact_4x": compact}
