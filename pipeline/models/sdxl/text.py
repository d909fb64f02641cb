"""SDXL prompt encoding and where its CLIP tokenizer comes from, offline.

Encoding is SGM's ``GeneralConditioner`` for SDXL (= diffusers' ``encode_prompt``): both encoders'
penultimate hidden states concatenated along features (77 tokens, truncated, no chunking), and
bigG's projected pooled output. The negative prompt is always encoded (no zeroing).

A ComfyUI models folder holds no tokenizer files, and nothing may be downloaded, so the BPE vocabulary
is looked for, in order, in:
1. ``[weights] sdxl_tokenizer`` in the config: a folder with ``vocab.json`` + ``merges.txt`` (or a
   diffusers ``tokenizer/`` folder), or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``;
2. the SDXL diffusers folder's own ``tokenizer/`` and ``tokenizer_2/``;
3. next to each ComfyUI models folder: ComfyUI's ``comfy/sd1_tokenizer`` (shipped with ComfyUI);
   and any ``models/diffusers/*/tokenizer`` (a diffusers SDXL folder kept there);
4. the ``bpe_simple_vocab_16e6.txt.gz`` bundled in the open_clip_torch package (MIT), read as a data
   file (open_clip itself is never imported).
Both SDXL tokenizers share the vocabulary; the bigG one pads with id 0 ("!") as OpenCLIP does, the
CLIP-L one with <|endoftext|>.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import MissingWeights
from ..weights import WeightLocator
from .weights import BPE_NAME
from .weights import TOKENIZER as TOKENIZER_SPEC

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


@lru_cache(maxsize=4)
def _bpe_vocab(path: str) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """OpenAI CLIP's SimpleTokenizer vocabulary from its merges file (the same ids as HF vocab.json)."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}, [tuple(m.split()) for m in merges]


def _from_source(src: Path, sub: str, pad: str) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    if src.is_file():  # bpe_simple_vocab_16e6.txt.gz
        vocab, merges = _bpe_vocab(str(src))
        # the tokenizers library wants merge pairs as tuples; transformers' annotation says strings
        return CLIPTokenizer(vocab=vocab, merges=merges,  # pyright: ignore[reportArgumentType]
                             model_max_length=MAX_TOKENS, pad_token=pad)
    folder = src / sub if (src / sub).is_dir() else src
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=MAX_TOKENS)
    if tok.pad_token != pad:
        tok.pad_token = pad
    return tok


def tokenizer_source(locator: WeightLocator, sdxl_path: Path | None = None) -> Path:
    """The first place (file or folder) the CLIP vocabulary can be read from; MissingWeights if none."""
    configured = locator.config.weights.get("sdxl_tokenizer")
    if configured is not None and configured.exists():
        return configured
    if sdxl_path is not None and (sdxl_path / "tokenizer").is_dir():
        return sdxl_path
    found = locator.find_optional("sdxl_tokenizer")
    if found is not None:
        return found.parent if found.name == "tokenizer" else found
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            if (Path(d) / BPE_NAME).is_file():
                return Path(d) / BPE_NAME
    looked = ([f"{configured} (configured as weights.sdxl_tokenizer)"] if configured else [])
    looked += [f"{sdxl_path}/tokenizer"] if sdxl_path is not None and sdxl_path.is_dir() else []
    looked += locator.looked_in("sdxl_tokenizer") + [f"{BPE_NAME} in the open_clip_torch package"]
    raise MissingWeights(
        "sdxl_tokenizer", TOKENIZER_SPEC.description, looked,
        hint="SDXL checkpoints carry no tokenizer. Install the open_clip_torch package (it bundles the "
             f"vocabulary), or point weights.sdxl_tokenizer at ComfyUI's comfy/sd1_tokenizer folder, a "
             f"diffusers SDXL folder's tokenizer/ or a copy of {BPE_NAME}.",
    )


def load_tokenizers(src: Path) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """(CLIP-L tokenizer, bigG tokenizer) from a source found by ``tokenizer_source``."""
    return _from_source(src, "tokenizer", "<|endoftext|>"), _from_source(src, "tokenizer_2", "!")


@torch.no_grad()
def encode(te1: CLIPTextModel, te2: CLIPTextModelWithProjection, tok1: CLIPTokenizer, tok2: CLIPTokenizer,
           prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(context [B, 77, w1 + w2], pooled [B, projection]) in float32."""

    def run(tok: CLIPTokenizer, te: CLIPTextModel | CLIPTextModelWithProjection) -> Any:
        ids = tok(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                  return_tensors="pt").input_ids.to(device)
        return te(ids, output_hidden_states=True)

    out1, out2 = run(tok1, te1), run(tok2, te2)
    context = torch.cat([out1.hidden_states[-2].float(), out2.hidden_states[-2].float()], dim=-1)
    return context, out2.text_embeds.float()
