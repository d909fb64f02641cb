"""Where the FLUX.1 parts are found: the transformer (SRPO or FLUX.1-dev), the autoencoder, the two text
encoders and their tokenizers, or a whole diffusers FLUX.1-dev folder (``base``)."""

from __future__ import annotations

from ..specs import WeightSpec

FLUX_LICENSE = ("FLUX.1 [dev] Non-Commercial License v1.1.1 (non-commercial use only); SRPO weights "
                "additionally under Tencent's academic-only terms")
DEV_FOLDER_GLOB = "*[Ff][Ll][Uu][Xx]*[Dd][Ee][Vv]*"  # a diffusers FLUX.1-dev folder, whatever its capitalisation
TEXT_FOLDERS = ("text_encoders", "clip", "diffusers")
SRPO = "*[Ss][Rr][Pp][Oo]"  # SRPO in any capitalisation (flux1DevSrpo_…, SRPO-Q8_0.gguf, …)
FLUX = "*[Ff][Ll][Uu][Xx]"

SPECS = (
    WeightSpec(
        key="flux_transformer",
        description="the Flux transformer: tencent/SRPO diffusion_pytorch_model.safetensors, a BFL-layout "
                    "SRPO or flux1-dev .safetensors (bf16, fp8 or ComfyUI's scaled fp8), a ComfyUI-GGUF .gguf "
                    "(Q8_0, Q5_K, Q4_K, Q4_0…), or a diffusers FLUX.1-dev transformer/ folder",
        folders=("diffusion_models", "unet", "diffusers"),
        # SRPO before FLUX.1-dev, full-precision safetensors before GGUF (in that folder order)
        patterns=(f"{SRPO}*.safetensors", f"{SRPO}*/diffusion_pytorch_model.safetensors", f"{SRPO}*.sft",
                  f"{SRPO}*.gguf", "flux1-dev*.safetensors", "flux1-dev*.sft", f"{FLUX}*[Dd][Ee][Vv]*fp8*.safetensors",
                  "flux1-dev*.gguf", f"{FLUX}*[Dd][Ee][Vv]*.gguf", f"{DEV_FOLDER_GLOB}/transformer"),
        kind="any", license=FLUX_LICENSE,
    ),
    WeightSpec(
        key="flux_vae",
        description="the FLUX.1 autoencoder ae.safetensors (from black-forest-labs/FLUX.1-dev)",
        folders=("vae", "diffusers"),
        patterns=("ae.safetensors", "ae.sft", "flux*ae*.safetensors", "*[Ff][Ll][Uu][Xx]*vae*.safetensors",
                  f"{DEV_FOLDER_GLOB}/vae"),
        kind="any", license=FLUX_LICENSE,
    ),
    WeightSpec(
        key="flux_dev",
        description="a diffusers FLUX.1-dev folder (model_index.json, transformer/, vae/, text_encoder*/, "
                    "tokenizer*/); used when a stage sets base = \"flux_dev\"",
        folders=("diffusers",),
        patterns=("FLUX.1-dev", DEV_FOLDER_GLOB),
        kind="dir", license=FLUX_LICENSE,
    ),
    WeightSpec(
        key="flux_clip_l", folders=TEXT_FOLDERS, kind="any", license="MIT (OpenAI CLIP)",
        description="the CLIP-L text encoder clip_l.safetensors (ComfyUI), or FLUX.1-dev's text_encoder/ folder",
        patterns=("clip_l.safetensors", "clip_l*.safetensors", "*clip_l*.safetensors",
                  f"{DEV_FOLDER_GLOB}/text_encoder"),
    ),
    WeightSpec(
        key="flux_t5", folders=TEXT_FOLDERS, kind="any", license="Apache-2.0 (Google T5 v1.1)",
        description="the T5-XXL text encoder t5xxl_fp16.safetensors (ComfyUI), or FLUX.1-dev's text_encoder_2/ "
                    "folder",
        patterns=("t5xxl_fp16.safetensors", "t5xxl*.safetensors", "*t5*xxl*.safetensors",
                  f"{DEV_FOLDER_GLOB}/text_encoder_2"),
    ),
    # tokenizers are not weights, but are found the same way: ComfyUI ships them next to its models/
    WeightSpec(
        key="flux_clip_tokenizer", kind="dir", license="MIT (OpenAI CLIP)",
        description="the CLIP-L tokenizer folder (vocab.json + merges.txt or tokenizer.json): ComfyUI ships it as "
                    "ComfyUI/comfy/sd1_tokenizer (found when --comfy-models is ComfyUI/models), a diffusers "
                    "FLUX.1-dev folder has it as tokenizer/; or copy either to <models>/tokenizers/sd1_tokenizer",
        folders=("../comfy", "tokenizers", "diffusers"),
        patterns=("sd1_tokenizer", "clip_l_tokenizer", f"{DEV_FOLDER_GLOB}/tokenizer"),
    ),
    WeightSpec(
        key="flux_t5_tokenizer", kind="dir", license="Apache-2.0 (Google T5 v1.1)",
        description="the T5 tokenizer folder (tokenizer.json or spiece.model): ComfyUI ships it as "
                    "ComfyUI/comfy/text_encoders/t5_tokenizer, a diffusers FLUX.1-dev folder as tokenizer_2/; "
                    "or copy either to <models>/tokenizers/t5_tokenizer",
        folders=("../comfy/text_encoders", "../comfy", "tokenizers", "diffusers"),
        patterns=("t5_tokenizer", "t5xxl_tokenizer", f"{DEV_FOLDER_GLOB}/tokenizer_2"),
    ),
)
