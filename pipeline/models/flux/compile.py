"""Regional compilation of the FLUX transformer: ``torch.compile`` on each repeated block (the 19
double-stream and 38 single-stream blocks), ``fullgraph=False``.

This is diffusers' ``compile_repeated_blocks`` idea (the blocks listed in the model's
``_repeated_blocks``), applied and undone per stage: compiling once per block class costs ~25 s on an
H200 instead of minutes for the whole model, and measured 1.29x faster on 4 batched 1024² tiles
(../shared/docs/PERF_ANCHORS.md; ``fullgraph=True`` fails there on torch 2.11 + diffusers 0.42).
Dynamo's graphs depend on the input shapes only: every tile of a plan has one size and stage 3 runs on
the same frame as stage 2, so nothing recompiles between tiles or between the two stages (the tests
count compilations). The compiled blocks stay with the cached model, so the daemon pays once.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("dermis.flux")


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    names = set(getattr(model, "_repeated_blocks", ()) or ("FluxTransformerBlock", "FluxSingleTransformerBlock"))
    return [m for m in model.modules() if type(m).__name__ in names]


def is_compiled(model: torch.nn.Module) -> bool:
    return any(getattr(b, "_compiled_call_impl", None) is not None for b in repeated_blocks(model))


def regional_compile(model: torch.nn.Module, on: bool, backend: str = "inductor") -> int:
    """Compile (``on``) or restore every repeated block; returns how many blocks are compiled now."""
    blocks = repeated_blocks(model)
    for block in blocks:
        compiled = getattr(block, "_compiled_call_impl", None) is not None
        if on and not compiled:
            block.compile(backend=backend, fullgraph=False)
        elif not on and compiled:
            block._compiled_call_impl = None  # what nn.Module.compile set: plain eager calls again
    n = sum(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    if on:
        log.info("FLUX: %d transformer blocks compiled (%s)", n, backend)
    return n
