"""Where SDXL checkpoints and the CLIP vocabulary of SDXL's text encoders are found.

ComfyUI users keep SDXL checkpoints in ``models/checkpoints``; a diffusers SDXL folder may sit in
``models/diffusers``. Any other SDXL fine-tune is chosen with ``--set supir.sdxl=checkpoints/<file>``
(relative to a models folder) or ``[weights] sdxl``. Where the tokenizer is looked for besides this
spec: ``pipeline.models.sdxl.text.tokenizer_source``.
"""

from __future__ import annotations

from ..specs import WeightSpec

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"

SDXL = WeightSpec(
    key="sdxl",
    description="SDXL base 1.0 or an SDXL fine-tune: one .safetensors in the original layout "
                "(sd_xl_base_1.0.safetensors) or a diffusers folder",
    folders=("checkpoints", "diffusers"),
    patterns=("sd_xl_base_1.0_0.9vae.safetensors", "sd_xl_base_1.0.safetensors", "sd_xl_base*.safetensors",
              "stable-diffusion-xl-base-1.0"),
    kind="any",
    license="CreativeML Open RAIL++-M",
)
SDXL_LIGHTNING = WeightSpec(
    key="sdxl_lightning",
    description="an SDXL Lightning fine-tune (e.g. Juggernaut XL Lightning) as one .safetensors, for the "
                "DPM++ preset",
    folders=("checkpoints",),
    patterns=("*Lightning*.safetensors", "*lightning*.safetensors"),
    license="the fine-tune's own licence (SDXL: CreativeML Open RAIL++-M)",
)
TOKENIZER = WeightSpec(
    key="sdxl_tokenizer",
    description="the CLIP BPE vocabulary of SDXL's text encoders (vocab.json + merges.txt, or "
                f"{BPE_NAME})",
    folders=("../comfy", "diffusers"),
    patterns=("sd1_tokenizer", "*/tokenizer", BPE_NAME),
    kind="any",
    license="MIT (OpenAI CLIP vocabulary)",
)

SPECS = (SDXL, SDXL_LIGHTNING, TOKENIZER)
