"""Tiny random FLUX.1 parts written in the real on-disk layouts, for tests and CPU demos.

``build_flux(models_root)`` lays them out like a ComfyUI ``models/`` folder, so the real loaders read
them exactly as they read a user's downloads:

- ``diffusion_models/SRPO/diffusion_pytorch_model.safetensors``: the transformer in the diffusers layout,
  fp32 (like tencent/SRPO); ``unet/flux1-dev.safetensors``: the same weights in BFL's layout, bf16
  (like black-forest-labs' ``flux1-dev.safetensors``);
- ``vae/ae.safetensors``: the autoencoder in BFL's layout (1x1-conv attention, ``nin_shortcut``…);
- ``text_encoders/clip_l.safetensors`` (transformers 4.x ``text_model.`` keys) and
  ``text_encoders/t5xxl_fp16.safetensors`` (fp16, the tied embedding stored once as ``shared.weight``);
- ``tokenizers/sd1_tokenizer`` and ``tokenizers/t5_tokenizer``: the folders ComfyUI ships in
  ``comfy/``, here with tiny in-memory vocabularies (no tokenizer files exist in any wheel);
- ``unet/variants/``: the compact files ComfyUI users keep, of a wider tiny transformer (``COMPACT``:
  K-quants need rows of whole 256-value blocks): ``flux1-dev-Q8_0.gguf``, ``flux1-dev-Q4_K_M.gguf``
  (Q4_K with Q5_K attention, as llama.cpp's Q4_K_M) and ``flux1-dev-fp8-e4m3fn-scaled.safetensors``
  (ComfyUI's scaled fp8). In a sub-folder, so the plain files above stay the ones found first.

``build_flux_diffusers(dir)`` writes the same parts as a diffusers FLUX.1-dev folder instead.
Every architecture keeps FLUX.1's structure (16 latent channels, 8x VAE, 2x2 packing, guidance
embedding); only widths and depths shrink.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..sdxl import keymap as K
from ..tiny import clip_tokenizer
from . import convert as fc
from .arch import FluxArch, FluxVaeArch, rope_axes

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel

TRANSFORMER = FluxArch(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=32, hidden_size=32,
                       mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=rope_axes(16),
                       guidance_embed=True)
VAE = FluxVaeArch(widths=(32, 32, 32, 32), layers=1)  # 4 levels: the real 8x factor; 32 = GroupNorm(32)'s minimum
# the compact (GGUF / fp8) files' transformer: 256-wide rows so Q4_K/Q5_K apply (narrower rows would be
# stored F16, as ComfyUI-GGUF's quantiser does); text widths match the tiny encoders
COMPACT = FluxArch(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=32, hidden_size=256,
                   mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=rope_axes(128),
                   guidance_embed=True)
COMPACT_FILES = {"flux_transformer_q8_0": "unet/variants/flux1-dev-Q8_0.gguf",
                 "flux_transformer_q4_k_m": "unet/variants/flux1-dev-Q4_K_M.gguf",
                 "flux_transformer_fp8_scaled": "unet/variants/flux1-dev-fp8-e4m3fn-scaled.safetensors"}


def t5_tokenizer(max_len: int = 512) -> Any:
    """A Unigram T5 tokenizer with pad=0, eos=1, unk=2 like T5's."""
    # transformers 5 keeps T5TokenizerFast as a runtime alias its stubs do not list; 4.x needs it by name
    from transformers import T5TokenizerFast  # pyright: ignore[reportAttributeAccessIssue]

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + c, -3.0) for c in string.ascii_lowercase]
    pieces += [(c, -4.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=max_len)


def compact_transformer(seed: int = 4) -> FluxTransformer2DModel:
    """The fp32 transformer the compact files are written from (their reference), deterministic."""
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(**COMPACT.to_diffusers()).eval()


def build_compact(root: Path) -> dict[str, Path]:
    """The GGUF and scaled-fp8 files of ``compact_transformer()`` under ``root`` (a models folder)."""
    from .compact import write_fp8, write_gguf

    bfl = bfl_transformer_state(compact_transformer().state_dict(), COMPACT)
    out = {}
    for key, rel in COMPACT_FILES.items():
        path = Path(root) / rel
        if path.suffix == ".gguf":
            out[key] = write_gguf(path, COMPACT, path.stem.split("-")[-1], bfl.__getitem__)
        else:
            out[key] = write_fp8(path, bfl, scaled=True)
    return out


def tiny_parts(seed: int = 0) -> tuple[FluxTransformer2DModel, AutoencoderKL, CLIPTextModel, T5EncoderModel,
                                        CLIPTokenizer, Any]:
    """(transformer, vae, clip, t5, clip tokenizer, t5 tokenizer), random, deterministic."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    ctok, ttok = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**TRANSFORMER.to_diffusers())
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**VAE.to_diffusers())
    torch.manual_seed(seed + 2)
    # the same shape rules the file loader infers (64-wide heads, quick_gelu, legacy eos pooling)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(ctok), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=1, num_hidden_layers=2, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=32, bos_token_id=0,
                                        eos_token_id=2, pad_token_id=1))
    torch.manual_seed(seed + 3)
    t5 = T5EncoderModel(T5Config(vocab_size=len(ttok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                 pad_token_id=0, eos_token_id=1))
    return transformer.eval(), vae.eval(), clip.eval(), t5.eval(), ctok, ttok


# ------------------------------------------------------------------------- writing real layouts


def bfl_transformer_state(state: dict[str, torch.Tensor], arch: FluxArch) -> dict[str, torch.Tensor]:
    """diffusers -> BFL transformer keys: the conversion plan run backwards (fuse q/k/v(/mlp) again)."""
    shapes = {}  # BFL shapes are not needed to invert, except the single-block fused width
    hidden = arch.hidden_size
    for i in range(arch.depth_single_blocks):
        shapes[f"single_blocks.{i}.linear1.weight"] = (3 * hidden + 4 * hidden, hidden)
        shapes[f"single_blocks.{i}.linear1.bias"] = (3 * hidden + 4 * hidden,)
    by_source: dict[str, list[tuple[int, str]]] = {}
    swapped = set()
    for target, (src, op) in fc.bfl_transformer_plan(shapes, arch).items():
        part = op.args[-1] if hasattr(op, "args") else 0
        by_source.setdefault(src, []).append((part, target))
        if op is fc.swap_halves:
            swapped.add(src)
    out = {}
    for src, targets in by_source.items():
        pieces = [state[t] for _, t in sorted(targets)]
        t = torch.cat(pieces, dim=0) if len(pieces) > 1 else pieces[0]
        out[src] = fc.swap_halves(t) if src in swapped else t  # swapping halves is its own inverse
    return out


def bfl_vae_state(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """diffusers -> BFL/LDM ``ae.safetensors`` keys (SDXL's LDM key map, 1x1-conv attention)."""
    return K.to_file(state, K.vae_keymap(state.keys(), levels, prefix=""))


def _save(tensors: dict[str, torch.Tensor], path: Path, dtype: torch.dtype, layout: str) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(dtype).contiguous() for k, v in tensors.items()}, str(path),
              metadata={"layout": layout, "note": "tiny random weights for tests, not a real model"})
    return path


def build_flux(root: Path) -> dict[str, Path]:
    """Write the tiny FLUX parts into the ComfyUI models folder ``root``; returns name -> path."""
    root = Path(root)
    transformer, vae, clip, t5, ctok, ttok = tiny_parts()
    sd = transformer.state_dict()
    out = {
        "flux_transformer": _save(sd, root / "diffusion_models/SRPO/diffusion_pytorch_model.safetensors",
                                  torch.float32, "diffusers-FluxTransformer2DModel"),
        "flux_transformer_bfl": _save(bfl_transformer_state(sd, TRANSFORMER), root / "unet/flux1-dev.safetensors",
                                      torch.bfloat16, "bfl-flux1"),
        "flux_vae": _save(bfl_vae_state(vae.state_dict(), len(VAE.widths)), root / "vae/ae.safetensors",
                          torch.float32, "bfl-ae"),
        "flux_clip_l": _save({f"text_model.{k}": v for k, v in clip.state_dict().items()},
                             root / "text_encoders/clip_l.safetensors", torch.float16, "transformers-4-clip"),
        "flux_t5": _save({k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},
                         root / "text_encoders/t5xxl_fp16.safetensors", torch.float16, "t5-encoder"),
    }
    out["flux_clip_tokenizer"] = write_comfy_clip_tokenizer(ctok, root / "tokenizers/sd1_tokenizer")
    ttok.save_pretrained(str(root / "tokenizers/t5_tokenizer"))  # tokenizer.json, as ComfyUI's t5_tokenizer
    out["flux_t5_tokenizer"] = root / "tokenizers/t5_tokenizer"
    out.update(build_compact(root))
    return out


def write_comfy_clip_tokenizer(tok: CLIPTokenizer, folder: Path) -> Path:
    """The files of ComfyUI's ``comfy/sd1_tokenizer``: vocab.json + merges.txt + configs, no tokenizer.json."""
    folder.mkdir(parents=True, exist_ok=True)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (folder / "vocab.json").write_text(json.dumps(tok.get_vocab()), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")  # tiny: no merges at all
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 8192, "do_lower_case": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def build_flux_diffusers(folder: Path) -> Path:
    """The same tiny parts as a diffusers FLUX.1-dev folder (transformer/, vae/, text_encoder*/, tokenizer*/)."""
    folder = Path(folder)
    transformer, vae, clip, t5, ctok, ttok = tiny_parts()
    transformer.save_pretrained(str(folder / "transformer"))
    vae.save_pretrained(str(folder / "vae"))
    clip.save_pretrained(str(folder / "text_encoder"))
    t5.save_pretrained(str(folder / "text_encoder_2"))
    ctok.save_pretrained(str(folder / "tokenizer"))
    ttok.save_pretrained(str(folder / "tokenizer_2"))
    (folder / "model_index.json").write_text('{"_class_name": "FluxPipeline"}\n', encoding="utf-8")
    return folder
