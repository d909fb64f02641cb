"""FLUX.1 text side: CLIP-L and T5-XXL encoders, their tokenizers, and prompt embeddings.

Encoders load from ComfyUI's single files (``clip_l.safetensors``, ``t5xxl_fp16.safetensors``; also the
``text_encoders.*`` prefixes of all-in-one checkpoints) or from diffusers ``text_encoder``/
``text_encoder_2`` folders. Single files carry no config, so it is read from tensor shapes (the two
numbers shapes cannot tell, CLIP's head count and activation, are CLIP-L's: 64-wide heads, quick_gelu).

Tokenizers are not weights and ComfyUI keeps none in ``models/``: they are found in a ComfyUI install
(``comfy/sd1_tokenizer``, ``comfy/text_encoders/t5_tokenizer`` next to the models folder), in
``models/tokenizers/``, in a diffusers FLUX.1-dev folder (``tokenizer/``, ``tokenizer_2/``) or at a
configured path.

Embeddings follow ComfyUI's FLUX text encoding: CLIP's pooled output from 77 tokens, T5's last hidden
state, no attention mask, from the prompt's tokens (and end-of-text) padded to at least ``t5_tokens``
(256: comfy/text_encoders/flux.py ``T5XXLTokenizer(min_length=256)``, whose ``max_length`` is unbounded,
so a longer prompt is kept whole, not cut). diffusers' FluxPipeline pads and cuts at 512 instead;
``t5_tokens=512`` gives its padding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import WrongWeights
from ..tensor_files import Plan, TensorSource, identity_plan, stream_into
from . import convert as fc
from .arch import count

if TYPE_CHECKING:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

CLIP_MAX_TOKENS = 77
Shapes = Mapping[str, Sequence[int]]

CLIP_MARKER = "embeddings.token_embedding.weight"
CLIP_PREFIXES = ("text_model.", "", "text_encoders.clip_l.transformer.text_model.",
                 "cond_stage_model.transformer.text_model.")
T5_MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"
T5_PREFIXES = ("", "text_encoders.t5xxl.transformer.", "encoder_model.")


@dataclass
class Conditioning:
    """Prompt embeddings for the transformer: T5 tokens (1, L, 4096) and CLIP's pooled vector (1, 768)."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor


@dataclass
class TextEncoders:
    clip: Any  # transformers CLIPTextModel
    t5: Any  # transformers T5EncoderModel
    clip_tokenizer: Any
    t5_tokenizer: Any


# ------------------------------------------------------------------------------------------ CLIP


def clip_config(shapes: Shapes, origin: Path) -> CLIPTextConfig:
    from transformers import CLIPTextConfig

    try:
        vocab, hidden = shapes["embeddings.token_embedding.weight"]
        positions = shapes["embeddings.position_embedding.weight"][0]
        inter = shapes["encoder.layers.0.mlp.fc1.weight"][0]
    except KeyError as e:
        raise WrongWeights(origin, f"is not a CLIP text encoder (no tensor {e}).") from None
    # eos_token_id 2 = transformers' legacy pooling at argmax(input_ids), i.e. the first end-of-text
    # token, which is what FLUX.1-dev's text_encoder/config.json selects (and ComfyUI does)
    return CLIPTextConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=count(shapes, r"encoder\.layers\.(\d+)\."),
        num_attention_heads=max(1, hidden // 64), max_position_embeddings=positions,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=hidden,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


def _clip_position_ids(model: torch.nn.Module) -> None:
    """The non-persistent position ids (0..n-1) that meta construction left empty; transformers >= 5.6
    dropped CLIPTextModel's ``text_model.`` level, so either spelling is found."""
    emb = model.get_submodule("text_model.embeddings" if hasattr(model, "text_model") else "embeddings")
    table = emb.get_submodule("position_embedding")
    if not isinstance(table, torch.nn.Embedding):
        raise TypeError(f"CLIP's position_embedding is a {type(table).__name__}, not an Embedding")
    n = table.weight.shape[0]
    emb.register_buffer("position_ids", torch.arange(n, device=table.weight.device).expand((1, -1)),
                        persistent=False)


def load_clip(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu") -> CLIPTextModel:
    """A CLIPTextModel from ComfyUI's clip_l file (or an all-in-one checkpoint) or a diffusers folder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return _load_encoder(
        path, dtype, device, model_cls=CLIPTextModel, config_cls=CLIPTextConfig, config_of=clip_config,
        prefixes=CLIP_PREFIXES, marker=CLIP_MARKER, what="a CLIP-L text encoder", rebuild=_clip_position_ids,
        plan_of=lambda shapes: identity_plan([k for k in shapes if not k.endswith("position_ids")]))


# -------------------------------------------------------------------------------------------- T5


def t5_config(shapes: Shapes, origin: Path) -> T5Config:
    from transformers import T5Config

    try:
        vocab, d_model = shapes.get("shared.weight") or shapes["encoder.embed_tokens.weight"]
        buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        inner = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
        gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
        d_ff = shapes["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"][0]
    except KeyError as e:
        raise WrongWeights(origin, f"is not a T5 encoder (no tensor {e}).") from None
    return T5Config(
        vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff, num_heads=heads,
        num_layers=count(shapes, r"encoder\.block\.(\d+)\."), relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128, feed_forward_proj="gated-gelu" if gated else "relu",
        layer_norm_epsilon=1e-6, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
        is_encoder_decoder=False, use_cache=False,
    )


def load_t5(path: Path, dtype: torch.dtype, device: torch.device | str = "cpu") -> T5EncoderModel:
    """A T5EncoderModel from ComfyUI's t5xxl file (or an all-in-one checkpoint) or a diffusers folder."""
    from transformers import T5Config, T5EncoderModel

    def plan_of(shapes: Shapes) -> dict[str, tuple[str, fc.Op]]:
        plan = identity_plan(shapes)
        # the token embedding is tied: files hold shared.weight, encoder.embed_tokens.weight or both
        emb = plan.get("shared.weight") or plan["encoder.embed_tokens.weight"]
        plan["shared.weight"] = plan["encoder.embed_tokens.weight"] = emb
        return plan

    return _load_encoder(
        path, dtype, device, model_cls=T5EncoderModel, config_cls=T5Config, config_of=t5_config,
        prefixes=T5_PREFIXES, marker=T5_MARKER, what="a T5 encoder", rebuild=lambda m: m.tie_weights(),
        plan_of=plan_of)


def _load_encoder(path: Path, dtype: torch.dtype, device: torch.device | str, *, model_cls: Any, config_cls: Any,
                  config_of: Callable[[Shapes, Path], Any], prefixes: tuple[str, ...], marker: str, what: str,
                  plan_of: Callable[[Shapes], Plan], rebuild: Callable[[Any], None]) -> Any:
    """A text encoder built on the meta device from its folder's config.json (a diffusers FLUX.1-dev
    ``text_encoder*/``) or from the file's shapes, then streamed in: one loading path for both."""
    path = Path(path)
    src = TensorSource.open(path, prefixes, marker=marker)
    with src:
        if marker not in src:
            raise WrongWeights(path, f"is not {what} (no '{marker}' under any of the prefixes "
                                     f"{', '.join(repr(p) for p in prefixes)}).")
        shapes = src.shapes()
        config_json = path / "config.json"
        if path.is_dir() and config_json.is_file():
            try:
                config = config_cls.from_json_file(str(config_json))
            except (OSError, ValueError, TypeError) as e:
                raise WrongWeights(config_json, f"is not a readable {config_cls.__name__} ({e}).") from None
        else:
            config = config_of(shapes, path)
        with torch.device("meta"):
            model = model_cls(config)
        return stream_into(model, src, plan_of(shapes), dtype=dtype, device=device, what=what, rebuild=rebuild)


# ------------------------------------------------------------------------------------ tokenizers


def load_tokenizers(clip_dir: Path, t5_dir: Path) -> tuple[CLIPTokenizer, Any]:
    """(CLIP tokenizer, T5 tokenizer) from local folders only."""
    # transformers 5 keeps T5TokenizerFast as a runtime alias its stubs do not list; 4.x needs it by name
    from transformers import CLIPTokenizer, T5TokenizerFast  # pyright: ignore[reportAttributeAccessIssue]

    out = []
    for cls, folder, needs in ((CLIPTokenizer, clip_dir, ("tokenizer.json", "vocab.json")),
                               (T5TokenizerFast, t5_dir, ("tokenizer.json", "spiece.model"))):
        folder = Path(folder)
        if not any((folder / n).is_file() for n in needs):
            raise WrongWeights(folder, f"is not a {cls.__name__} folder: it has none of {', '.join(needs)}.")
        try:
            out.append(cls.from_pretrained(str(folder), local_files_only=True))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WrongWeights(folder, f"does not load as a {cls.__name__} ({e}).") from None
    return out[0], out[1]


# ------------------------------------------------------------------------------------ embeddings


def t5_ids(tokenizer: Any, prompt: str, t5_tokens: int) -> torch.Tensor:
    """(1, max(t5_tokens, n)) ids: the prompt's n tokens with end-of-text, then padding (ComfyUI's T5)."""
    ids = list(tokenizer(prompt, truncation=False).input_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return torch.tensor([ids + [pad] * max(0, t5_tokens - len(ids))], dtype=torch.long)


@torch.inference_mode()
def encode_prompt(text: TextEncoders, prompt: str, *, t5_tokens: int = 256,
                  device: torch.device | str = "cpu",
                  use: Callable[[str], AbstractContextManager] = lambda name: nullcontext()) -> Conditioning:
    """Both embeddings of one prompt (float32, on the CPU).

    ``use("clip")`` / ``use("t5")`` wrap each encoder's turn (the memory placement moves it in).
    """
    clip_ids = text.clip_tokenizer(
        prompt, padding="max_length", max_length=CLIP_MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids
    with use("clip"):
        pooled = text.clip(clip_ids.to(device), output_hidden_states=False).pooler_output.float().cpu()
    ids = t5_ids(text.t5_tokenizer, prompt, t5_tokens)
    with use("t5"):
        embeds = text.t5(ids.to(device), output_hidden_states=False)[0].float().cpu()
    return Conditioning(prompt_embeds=embeds, pooled=pooled)
