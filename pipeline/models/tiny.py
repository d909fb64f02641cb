"""Random-weight models in the REAL on-disk formats, laid out like a ComfyUI ``models/`` folder.

``make_tiny_models(DIR)`` (also ``dermis dev make-tiny-models DIR``) writes files that the real loaders
read exactly as they would read the user's downloads, so tests and demos exercise every loader on a
CPU without any download. Each model family adds a builder to ``FAMILIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import CLIPTokenizer

Builder = Callable[[Path], dict[str, Path]]

# family -> "module:function" building it; the function takes the models/ root and returns name -> path
FAMILIES: dict[str, str] = {
    "spandrel": "pipeline.models.upscale.tiny:build_upscale",
    "faces": "pipeline.models.faces.tiny:build_faces",
    "flux": "pipeline.models.flux.tiny:build_flux",
    "supir": "pipeline.models.supir.tiny:build_supir",
}


def make_tiny_models(root: str | Path, families: Iterable[str] | None = None) -> dict[str, Path]:
    """Write every family's tiny models under ``root`` (a ComfyUI-style models folder)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for family in families or FAMILIES:
        module, _, func = FAMILIES[family].partition(":")
        builder: Builder = getattr(importlib.import_module(module), func)
        written.update(builder(root))
    return written


def clip_tokenizer(pad: str = "<|endoftext|>", max_len: int = 77) -> CLIPTokenizer:
    """A CLIP tokenizer over the byte-level alphabet with no merges (one token per character);
    <|endoftext|> is the last id. SDXL's bigG tokenizer pads with "!" (``pad``)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({c + "</w>": len(alphabet) + i for i, c in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_len, pad_token=pad)


def half(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp16 copies of the floating-point tensors (as released checkpoints store them: half the disk)."""
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
