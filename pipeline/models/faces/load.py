"""Loading the face models: RetinaFace through the one streaming path (``tensor_files``), the restorers
through spandrel, limited to the two face architectures."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import WrongWeights
from ..spandrel_loader import load_image_model
from ..tensor_files import TensorSource, identity_plan, stream_into
from .restorers import EXPECTED, FaceRestorer, face_registry
from .retinaface import CONFIGS, RetinaFace, variant_of

# DataParallel checkpoints (the original Pytorch_Retinaface files) prefix every key with "module."
RETINAFACE_PREFIXES = ("", "module.")
RETINAFACE_MARKERS = ("body.conv1.weight", "body.stage1.0.0.weight")


def load_retinaface(path: Path, device: torch.device | str = "cpu") -> RetinaFace:
    """An eval-mode fp32 RetinaFace from a facexlib/Pytorch_Retinaface file; WrongWeights if it is not one."""
    path = Path(path)
    with TensorSource.open(path, RETINAFACE_PREFIXES, marker=RETINAFACE_MARKERS) as src:
        keys = set(src.keys())
        variant = variant_of(keys)
        if variant is None:
            raise WrongWeights(
                path, "is not a RetinaFace detector (expected facexlib's detection_Resnet50_Final.pth or "
                "detection_mobilenet0.25_Final.pth key layout: body.*, fpn.*, ssh1.*, ClassHead.* …).",
                missing=[k for k in (*RETINAFACE_MARKERS, "fpn.output1.0.weight") if k not in keys],
            )
        with torch.device("meta"):
            net = RetinaFace(CONFIGS[variant])
        # BatchNorm's step counter is bookkeeping, not a weight: older checkpoints may lack it
        counters = [k for k in net.state_dict() if k.endswith("num_batches_tracked")]
        return stream_into(net, src, identity_plan(keys), dtype=torch.float32, device=device,
                           what=f"the RetinaFace {variant} layout", zero_if_absent=counters)


def load_face_restorer(path: Path, device: torch.device, dtype: torch.dtype) -> FaceRestorer:
    """GFPGAN or CodeFormer from ``path`` (WrongWeights for anything else)."""
    desc = load_image_model(Path(path), device, dtype, registry=face_registry(), expected=EXPECTED)
    return FaceRestorer(desc, Path(path))
