"""Random-weight face models in the real file layouts, where ComfyUI (ReActor) keeps them.

- ``facerestore_models/GFPGANv1.4.pth`` and ``codeformer-v0.1.0.pth``: ``{"params_ema": …}`` state dicts
  of spandrel's own GFPGANv1Clean / CodeFormer classes, i.e. the layout spandrel detects in the released
  files. Both architectures are fixed-size in spandrel (GFPGAN 86 M, CodeFormer 94 M parameters), so
  these cannot be made smaller; they are stored in fp16 to halve the disk (the loaders upcast).
- ``facedetection/detection_Resnet50_Final.pth`` (fp16) and ``detection_mobilenet0.25_Final.pth``:
  RetinaFace in facexlib's key layout, one of them with the ``module.`` prefix the original
  DataParallel checkpoints carry, so both spellings stay tested.

Random detectors find nothing useful: tests feed recorded landmarks instead (see tests/test_face_*.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..tiny import half


def gfpgan_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                 fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return net.state_dict()


def codeformer_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(seed)
    net = CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, latent_size=256,
                     connect_list=["32", "64", "128", "256"], fix_modules=["quantize", "generator"])
    return net.state_dict()


def retinaface_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from .retinaface import CONFIGS, RetinaFace

    torch.manual_seed(seed)
    return RetinaFace(CONFIGS[variant]).state_dict()


def build_faces(root: Path) -> dict[str, Path]:
    restore, detect = root / "facerestore_models", root / "facedetection"
    restore.mkdir(parents=True, exist_ok=True)
    detect.mkdir(parents=True, exist_ok=True)
    paths = {
        "gfpgan": restore / "GFPGANv1.4.pth",
        "codeformer": restore / "codeformer-v0.1.0.pth",
        "retinaface_resnet50": detect / "detection_Resnet50_Final.pth",
        "retinaface_mobilenet": detect / "detection_mobilenet0.25_Final.pth",
    }
    torch.save({"params_ema": half(gfpgan_state_dict(seed=11))}, paths["gfpgan"])
    torch.save({"params_ema": half(codeformer_state_dict(seed=12))}, paths["codeformer"])
    torch.save(half(retinaface_state_dict("resnet50", seed=13)), paths["retinaface_resnet50"])
    mobile = retinaface_state_dict("mobilenet0.25", seed=14)
    torch.save({f"module.{k}": v for k, v in mobile.items()}, paths["retinaface_mobilenet"])
    return paths
