"""What ``dermis doctor`` says about stages 2-3: which transformer file the lookup picks and why, what
``weight_dtype`` does with it on this card, and what each memory mode will hold on the device. From
file headers only: nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import DermisError
from ..placement import MODES, choose_mode
from ..tensor_files import TensorSource
from ..weights import WeightLocator
from . import memory
from .variant import Variant, describe, fp8_policy

GIB = 2**30
PARTS = {"vae": "flux_vae", "clip": "flux_clip_l", "t5": "flux_t5"}


def size(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n < GIB else f"{n / GIB:.1f} GiB"


def free_bytes(device: torch.device) -> int | None:
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None


def transformer_choice(locator: WeightLocator, device: torch.device, dtype: torch.dtype,
                       weight_dtype: str = "auto") -> tuple[list[str], Variant | None, str]:
    """(lines, the picked file's variant, the fp8 policy): the file, why, the other candidates."""
    configured = locator.config.weights.get("flux_transformer")
    found = list(locator.matches("flux_transformer"))
    if configured is not None:
        path, why = configured, "configured as weights.flux_transformer"
    elif found:
        path, why = found[0]
        why = f"first in the search order ({why})"
    else:
        return ["transformer: not found (see flux_transformer above)"], None, "upcast"
    try:
        variant = describe(path, dtype)
    except DermisError as e:
        return [f"transformer: {path}: {e}"], None, "upcast"
    policy, because = fp8_policy(weight_dtype, variant, free_bytes(device))
    lines = [f"transformer: {path}", f"  {variant.detail}, {size(variant.file_bytes)} on disk; picked: {why}",
             f"  weight_dtype {weight_dtype}: {because}; holds {size(variant.weight_bytes[policy])}"]
    others = [p for p, _ in found if p != path]
    if others:
        lines.append("  also found (set weights.flux_transformer or --set refine.transformer=… to use one): "
                     + ", ".join(str(p) for p in others[:6]) + (" …" if len(others) > 6 else ""))
    return lines, variant, policy


def part_bytes(path: Path, dtype: torch.dtype) -> int:
    """Bytes a file's tensors take once loaded in ``dtype`` (from the header)."""
    size = torch.empty((), dtype=dtype).element_size()
    with TensorSource(path) as src:
        return sum(int(torch.Size(s).numel()) * size for s in src.shapes().values())


def memory_lines(locator: WeightLocator, device: torch.device, dtype: torch.dtype, variant: Variant,
                 policy: str, tiles_per_batch: int = 4) -> list[str]:
    """Per memory mode, what the device holds while the prompts are encoded and while sampling."""
    sizes = {"transformer": variant.weight_bytes[policy]}
    for part, key in PARTS.items():
        path = locator.find_optional(key)
        if path is not None:
            try:
                sizes[part] = part_bytes(path, dtype)
            except DermisError:
                pass
    free = free_bytes(device)
    listing = ", ".join(f"{n} {size(b)}" for n, b in sizes.items())
    where = f"{size(free)} free on {device}" if free is not None else f"no CUDA device: on a card, in {str(dtype)[6:]}"
    lines = [f"memory per mode ({where}; {listing}; {tiles_per_batch} tiles per batch):"]
    by_mode = memory.phases(sizes, tiles_per_batch)
    for mode in MODES:
        enc, sample = by_mode[mode]
        fits = "" if free is None else ("  fits" if max(enc, sample) <= free else "  does not fit")
        lines.append(f"  {mode:<14} encoding prompts {size(enc):>9}, sampling {size(sample):>9}{fits}")
    if free is not None:
        n = memory.needs(sizes, tiles_per_batch)
        lines.append(f"  memory = auto picks {choose_mode('auto', device, resident=n.resident, offload=n.model_offload)}")
    return lines


def flux_lines(locator: WeightLocator, device: torch.device, dtype: torch.dtype) -> list[str]:
    """Everything ``dermis doctor`` and ``dermis status`` say about stages 2-3: the transformer file,
    its variant and why, then what each memory mode holds (as on a card in bf16 when there is none)."""
    if device.type != "cuda":  # what a card would hold: FLUX runs in bf16 there
        dtype = torch.bfloat16
    lines, variant, policy = transformer_choice(locator, device, dtype)
    out = ["FLUX (stages refine, final):", *(f"  {line}" for line in lines)]
    if variant is not None:
        out += [f"  {line}" for line in memory_lines(locator, device, dtype, variant, policy)]
    return out
