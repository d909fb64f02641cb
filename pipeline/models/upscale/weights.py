"""Where the spandrel image models of the recipes are found."""

from __future__ import annotations

from ..specs import WeightSpec

SPECS = (
    WeightSpec(
        key="skin_detail",
        description="1x-ITF-SkinDiffDetail-Lite-v1, a 1x ESRGAN (32nf/12nb) skin detail model",
        folders=("upscale_models", "ESRGAN"),
        patterns=(
            "1x-ITF-SkinDiffDetail-Lite-v1.pth",
            "1x-ITF-SkinDiffDetail-Lite-v1.safetensors",
            "*SkinDiffDetail*.pth",
            "*SkinDiffDetail*.safetensors",
        ),
        license="CC-BY-NC-SA-4.0 (non-commercial)",
    ),
)
