"""Full-size random-weight checkpoints in the real on-disk layouts, written tensor by tensor (a 24 GB
file never sits in memory): the files the ``supir-srpo`` preset reads, laid out like a ComfyUI models
folder, for ``bench_e2e_gpu.py`` and ``bench_load_ram.py``.

The layouts come from the library's own tiny builders run at full size on the meta device (the same
key maps the loaders invert), so names and shapes are exactly what the loaders expect; only the values
are random: 2-D weights N(0, 1/fan_in), biases 0, norm scales 1, which keeps bf16 activations finite.

Sizes written (bf16 unless noted): FLUX.1-dev transformer 23.8 GB (BFL layout) and its Q8_0 GGUF
12.7 GB / scaled fp8 11.9 GB variants, ae.safetensors 0.17 GB, clip_l 0.25 GB, t5xxl_fp16 9.5 GB,
SDXL base 6.9 GB (fp16), SUPIR-v0Q_fp16 2.7 GB, the SkinDiffDetail ESRGAN (its real size, 20 MB).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch

from pipeline.models.flux import compact
from pipeline.models.flux import tiny as flux_tiny
from pipeline.models.flux.arch import FLUX_DEV, FluxArch, FluxVaeArch
from pipeline.models.sdxl.arch import ClipArch, UNetArch, VaeArch

FLUX_VAE = FluxVaeArch(widths=(128, 256, 512, 512), layers=2)
SDXL_UNET = UNetArch(in_channels=4, out_channels=4, widths=(320, 640, 1280), layers=2, attention=(False, True, True),
                     depth=(1, 2, 10), context_dim=2048, adm_in_channels=2816)
SDXL_VAE = VaeArch(widths=(128, 256, 512, 512), layers=2, latent_channels=4)
CLIP_L = ClipArch(vocab_size=49408, width=768, layers=12, intermediate=3072, positions=77)
CLIP_G = ClipArch(vocab_size=49408, width=1280, layers=32, intermediate=5120, positions=77, projection_dim=1280)
Layout = dict[str, tuple[torch.dtype, tuple[int, ...]]]
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float8_e4m3fn: "F8_E4M3",
             torch.int64: "I64"}


def random_tensor(name: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Plausible random values for a weight of this name and shape (float32)."""
    if len(shape) >= 2:
        return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    if "norm" in name or name.endswith((".scale", "_norm.weight", "ln_1.weight", "ln_2.weight")):
        return torch.ones(shape)
    return torch.zeros(shape)


def write_safetensors(path: Path, layout: Layout, tensor: Callable[[str], torch.Tensor]) -> Path:
    """A safetensors file written header first, then one tensor at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header: dict[str, object] = {"__metadata__": {"note": "random full-size weights for benchmarks"}}
    offset = 0
    for name, (dtype, shape) in layout.items():
        n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for name, (dtype, _shape) in layout.items():
            t = tensor(name).to(dtype).contiguous().reshape(-1)  # 1-D: a 0-d tensor cannot be viewed as bytes
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return path


def _layout(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> Layout:
    return {k: (dtype if v.is_floating_point() else v.dtype, tuple(v.shape)) for k, v in state.items()}


def _filler(seed: int) -> Callable[[str, tuple[int, ...]], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return lambda name, shape: random_tensor(name, shape, g)


def write_layout(path: Path, layout: Layout, seed: int) -> Path:
    fill = _filler(seed)
    return write_safetensors(path, layout, lambda name: fill(name, layout[name][1]))


# ------------------------------------------------------------------------------------------ FLUX


def write_transformer(path: Path, arch: FluxArch, variant: str, seed: int = 0) -> Path:
    """A random FLUX transformer file in BFL's layout: ``bf16`` safetensors, ``fp8`` (ComfyUI's scaled
    fp8) or a ComfyUI-GGUF ``Q8_0``/``Q4_K_M``/… file."""
    shapes = compact.bfl_shapes(arch)
    fill = _filler(seed)
    if variant == "bf16":
        return write_safetensors(path, {k: (torch.bfloat16, s) for k, s in shapes.items()}, lambda k: fill(k, shapes[k]))
    if variant != "fp8":
        return compact.write_gguf(path, arch, variant, lambda k: fill(k, shapes[k]))
    layout: Layout = {}
    for k, s in shapes.items():
        layout.update({n: (d, sh) for n, d, sh in compact.fp8_layout(k, s, scaled=True)})
    marker, dtype, shape = compact.SCALED_MARKER
    layout[marker] = (dtype, shape)
    current: dict[str, torch.Tensor] = {}

    def fp8(key: str) -> torch.Tensor:
        if key == marker:
            return torch.empty(shape, dtype=dtype)
        if key not in current:  # a weight comes first in the layout, its scales right after
            current.clear()
            current.update(compact.fp8_entries(key, fill(key, shapes[key]), scaled=True))
        return current[key]

    return write_safetensors(path, layout, fp8)


FILES = {"bf16": "unet/flux1-dev.safetensors", "fp8": "unet/flux1-dev-fp8-e4m3fn-scaled.safetensors",
         "Q8_0": "unet/flux1-dev-Q8_0.gguf"}


def flux_files(root: Path, arch: FluxArch = FLUX_DEV, variants: Iterable[str] = ("bf16", "fp8", "Q8_0")) -> dict[str, Path]:
    """The FLUX parts: transformer (BFL layout) in the asked variants, ae, clip_l, t5xxl, tokenizers."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    out = {v: write_transformer(root / FILES[v], arch, v) for v in variants}
    with torch.device("meta"):
        vae = AutoencoderKL(**FLUX_VAE.to_diffusers())
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                            num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                                            hidden_act="quick_gelu", projection_dim=768))
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                     num_heads=64, feed_forward_proj="gated-gelu"))
    ae = flux_tiny.bfl_vae_state(vae.state_dict(), len(FLUX_VAE.widths))
    out["vae"] = write_layout(root / "vae/ae.safetensors", _layout(ae, torch.float32), 1)
    out["clip_l"] = write_layout(root / "text_encoders/clip_l.safetensors",
                                 _layout({f"text_model.{k}": v for k, v in clip.state_dict().items()}, torch.float16), 2)
    out["t5"] = write_layout(root / "text_encoders/t5xxl_fp16.safetensors",
                             _layout({k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},
                                     torch.float16), 3)
    _, _, _, _, ctok, ttok = flux_tiny.tiny_parts()  # tiny vocabularies: ids stay inside the real tables
    flux_tiny.write_comfy_clip_tokenizer(ctok, root / "tokenizers/sd1_tokenizer")
    ttok.save_pretrained(str(root / "tokenizers/t5_tokenizer"))
    return out


# ---------------------------------------------------------------------------------- SDXL + SUPIR


def supir_files(root: Path) -> dict[str, Path]:
    """SDXL base (SGM single file, fp16) and SUPIR-v0Q in Kijai's fp16 safetensors layout, full size: the
    library's tiny builders run on the meta device with the real architectures."""
    from pipeline.models.sdxl import tiny as sdxl_tiny
    from pipeline.models.supir import tiny as supir_tiny
    from pipeline.models.tiny import clip_tokenizer
    from pipeline.models.upscale.tiny import esrgan_state_dict

    with ExitStack() as stack:
        for module, values in ((sdxl_tiny, dict(UNET=SDXL_UNET, VAE=SDXL_VAE, TE1=CLIP_L, TE2=CLIP_G)),
                               (supir_tiny, dict(UNET=SDXL_UNET, VAE=SDXL_VAE, NHIDDEN=128))):
            for attr, value in values.items():
                stack.enter_context(mock.patch.object(module, attr, value))
            stack.enter_context(mock.patch.object(module, "perturb_zeros", lambda m: None))
        stack.enter_context(torch.device("meta"))
        sdxl, supir = sdxl_tiny.sdxl_state(0), supir_tiny.supir_state(0)
    ckpts = root / "checkpoints"
    out = {"sdxl": write_layout(ckpts / "sd_xl_base_1.0.safetensors", _layout(sdxl, torch.float16), 4),
           "supir_v0q": write_layout(ckpts / "SUPIR-v0Q_fp16.safetensors", _layout(supir, torch.float16), 5)}
    tok = root / "diffusers" / "sdxl-tokenizer-tiny"
    clip_tokenizer("<|endoftext|>").save_pretrained(str(tok / "tokenizer"))
    clip_tokenizer("!").save_pretrained(str(tok / "tokenizer_2"))
    skin = root / "upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth"
    skin.parent.mkdir(parents=True, exist_ok=True)
    torch.save(esrgan_state_dict(num_filters=32, num_blocks=12, scale=1, seed=6), skin)  # the real size
    out["skin_detail"] = skin
    return out
