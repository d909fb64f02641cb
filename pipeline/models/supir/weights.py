"""Where SUPIR files are found (SUPIR only adds to an SDXL model: see ``pipeline.models.sdxl.weights``).

kijai/ComfyUI-SUPIR lists SUPIR files from ``models/checkpoints``, ComfyUI's native SUPIR node from
``models/model_patches``.
"""

from __future__ import annotations

from ..specs import WeightSpec

SUPIR_LICENSE = "SUPIR: non-commercial use only (Fanghua-Yu/SUPIR); SDXL: CreativeML Open RAIL++-M"
SUPIR_FOLDERS = ("checkpoints", "model_patches", "supir", "SUPIR")


def _supir(version: str, description: str) -> WeightSpec:
    return WeightSpec(
        key=f"supir_{version.lower()}",
        description=description,
        folders=SUPIR_FOLDERS,
        patterns=(f"SUPIR-{version}_fp16.safetensors", f"SUPIR-{version}*.safetensors", f"SUPIR-{version}*.ckpt",
                  f"SUPIR_{version}*.safetensors", f"SUPIR_{version}*.ckpt"),
        license=SUPIR_LICENSE,
    )


SPECS = (
    _supir("v0Q", "SUPIR-v0Q (.ckpt, or Kijai's pruned SUPIR-v0Q_fp16.safetensors): SUPIR's additions to SDXL"),
    _supir("v0F", "SUPIR-v0F (.ckpt, or SUPIR-v0F_fp16.safetensors): trained on lighter degradations, keeps "
                  "more detail"),
)
