"""FLUX's device memory: the placement of its parts, the ``auto`` mode choice, and what each mode holds.

Parts: the transformer and the VAE for the whole stage; CLIP-L and T5-XXL only while the job's prompts
are encoded (then ``Placement.retire`` sends them back to the CPU: their embeddings are cached per
job and stage 3 reuses stage 2's). The chooser counts the text encoders for the time they are on the
device: in ``resident`` mode next to whatever FLUX weights are already there, in ``model_offload``
mode one part at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..cache import module_bytes
from ..placement import Mode, Placement, choose_mode, held_bytes

STREAMED = ("transformer", "t5")  # parts big enough to stream layer by layer in sequential mode
# activations of one 1024² FLUX.1-dev tile in bf16 (4096 image + 512 text tokens), an estimate (not
# measured here: no GPU); too low is safe, the engine's out-of-memory fallback takes over
ACTIVATION_BYTES_PER_TILE = 2_500_000_000
MARGIN_BYTES = 2_000_000_000  # allocator slack, CUDA context, a dequantised layer of a compact file
TEXT = ("clip", "t5")


def placement(mode: str, device: torch.device, parts: dict[str, torch.nn.Module]) -> Placement:
    """FLUX's memory placement: lazy offload (the transformer is entered once per tile batch, so it stays
    until another part needs the room) and hooks only on the parts too big to move whole."""
    return Placement(mode, device, parts, streamed=STREAMED, label="FLUX")


@dataclass(frozen=True)
class Needs:
    """Device bytes each mode needs at its peak (sampling, or encoding the prompts)."""

    resident: int
    model_offload: int
    sequential: int

    def of(self, mode: str) -> int:
        return getattr(self, mode)


def phases(sizes: Mapping[str, int], tiles_per_batch: int, *, held: int = 0,
           encode: bool = True) -> dict[str, tuple[int, int]]:
    """Per mode, device bytes (while the prompts are encoded, while sampling), from part sizes in bytes
    (``transformer``, ``vae``, and ``clip``/``t5`` when the prompts must be encoded). ``held``: FLUX
    weights already on the device, which stay there while a resident job encodes its prompts."""
    work = ACTIVATION_BYTES_PER_TILE * tiles_per_batch + MARGIN_BYTES
    main = {k: v for k, v in sizes.items() if k not in TEXT}
    text = {k: v for k, v in sizes.items() if k in TEXT} if encode else {}
    enc = lambda need: need + MARGIN_BYTES if text else 0  # noqa: E731
    # sequential: the VAE and CLIP move whole, the transformer and T5 stream one block at a time
    block = main.get("transformer", 0) // 57  # 19 double + 38 single blocks
    return {
        "resident": (enc(held + sum(text.values())), sum(main.values()) + work),
        "model_offload": (enc(max(text.values(), default=0)), max(main.values(), default=0) + work),
        "sequential": (enc(max(text.get("clip", 0), text.get("t5", 0) // 24)), max(main.get("vae", 0), block) + work),
    }


def needs(sizes: Mapping[str, int], tiles_per_batch: int, *, held: int = 0, encode: bool = True) -> Needs:
    """The peak of ``phases`` for each mode."""
    p = phases(sizes, tiles_per_batch, held=held, encode=encode)
    return Needs(**{mode: max(both) for mode, both in p.items()})


def choose_memory(requested: str, device: torch.device, parts: dict[str, torch.nn.Module],
                  tiles_per_batch: int, text: Mapping[str, torch.nn.Module] | None = None) -> Mode:
    """``auto``: resident when every part, one batch's activations and (while the prompts are encoded)
    the text encoders fit, model offload when the biggest of them does (parts already on the device
    count as free), else sequential. ``text``: the encoders, when this job must encode prompts."""
    sizes = {n: module_bytes(m) for n, m in {**parts, **(text or {})}.items()}
    held = held_bytes(parts, device)
    n = needs(sizes, tiles_per_batch, held=held, encode=bool(text))
    return choose_mode(requested, device, resident=n.resident, offload=n.model_offload, held=held)
