"""Where SDXL and SUPIR files are found (registered at import; see ``pipeline.models.weights``).

ComfyUI users keep SDXL checkpoints in ``models/checkpoints``; kijai/ComfyUI-SUPIR lists SUPIR files
from ``models/checkpoints`` too, ComfyUI's native SUPIR node from ``models/model_patches``. A diffusers
SDXL folder may sit in ``models/diffusers``. Any other SDXL fine-tune is chosen with
``--set supir.sdxl=checkpoints/<file>.safetensors`` (relative to a models folder) or ``[weights] sdxl``.
"""

from __future__ import annotations

from ..weights import WeightSpec, register

SUPIR_LICENSE = "SUPIR: non-commercial use only (Fanghua-Yu/SUPIR); SDXL: CreativeML Open RAIL++-M"
SUPIR_FOLDERS = ("checkpoints", "model_patches", "supir", "SUPIR")


def _supir_patterns(v: str) -> tuple[str, ...]:
    return (f"SUPIR-{v}_fp16.safetensors", f"SUPIR-{v}*.safetensors", f"SUPIR-{v}*.ckpt",
            f"SUPIR_{v}*.safetensors", f"SUPIR_{v}*.ckpt")


SDXL = register(WeightSpec(
    key="sdxl",
    description="SDXL base 1.0 or an SDXL fine-tune: one .safetensors in the original layout "
                "(sd_xl_base_1.0.safetensors) or a diffusers folder",
    folders=("checkpoints", "diffusers"),
    patterns=("sd_xl_base_1.0_0.9vae.safetensors", "sd_xl_base_1.0.safetensors", "sd_xl_base*.safetensors",
              "stable-diffusion-xl-base-1.0"),
    kind="any",
    license="CreativeML Open RAIL++-M",
))

SDXL_LIGHTNING = register(WeightSpec(
    key="sdxl_lightning",
    description="an SDXL Lightning fine-tune (e.g. Juggernaut XL Lightning) as one .safetensors, for the "
                "DPM++ preset",
    folders=("checkpoints",),
    patterns=("*Lightning*.safetensors", "*lightning*.safetensors"),
    license="the fine-tune's own licence (SDXL: CreativeML Open RAIL++-M)",
))

SUPIR_V0Q = register(WeightSpec(
    key="supir_v0q",
    description="SUPIR-v0Q (.ckpt, or Kijai's pruned SUPIR-v0Q_fp16.safetensors): SUPIR's additions to SDXL",
    folders=SUPIR_FOLDERS,
    patterns=_supir_patterns("v0Q"),
    license=SUPIR_LICENSE,
))

SUPIR_V0F = register(WeightSpec(
    key="supir_v0f",
    description="SUPIR-v0F (.ckpt, or SUPIR-v0F_fp16.safetensors): trained on lighter degradations, keeps "
                "more detail",
    folders=SUPIR_FOLDERS,
    patterns=_supir_patterns("v0F"),
    license=SUPIR_LICENSE,
))
