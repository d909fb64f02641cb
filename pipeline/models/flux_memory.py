"""Where the FLUX parts live while a job runs, and what to give up when the device is full.

Three modes, from fastest to leanest (the same three diffusers pipelines offer, applied to our parts):

- ``resident``: every part on the device (an 80 GB H100 holds all of FLUX.1-dev in bf16, ~34 GB);
- ``model_offload``: only the part in use is on the device, the others wait in CPU memory (the
  transformer alone is 24 GB; T5 9.5 GB is never on the device at the same time);
- ``sequential``: the big parts (transformer, T5) stream their weights to the device layer by layer
  through accelerate's ``cpu_offload`` hooks: lowest VRAM, slowest.

``escalate`` moves one mode down; the refine engine calls it when CUDA runs out of memory even with
one tile per batch. On the CPU every mode is the same placement, but the code paths (hooks included)
still run, which is what the tests exercise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import torch

from ..errors import InvalidParameter
from .cache import module_bytes

log = logging.getLogger("dermis.flux")

Mode = Literal["resident", "model_offload", "sequential"]
MODES: tuple[Mode, ...] = ("resident", "model_offload", "sequential")
STREAMED = ("transformer", "t5")  # parts big enough to stream layer by layer in sequential mode
# activations of one 1024² FLUX.1-dev tile in bf16 (4096 image + 512 text tokens), an estimate (not
# measured here: no GPU); too low is safe, the engine's out-of-memory fallback takes over
ACTIVATION_BYTES_PER_TILE = 2_500_000_000
MARGIN_BYTES = 2_000_000_000


def choose_mode(requested: str, device: torch.device, parts: Mapping[str, torch.nn.Module],
                tiles_per_batch: int) -> Mode:
    """``auto`` picks the fastest mode whose weights and activations fit the free device memory."""
    if requested in MODES:
        return requested  # type: ignore[return-value]
    if requested != "auto":
        raise InvalidParameter(f"memory must be auto, {', '.join(MODES)}; not {requested!r}.")
    if device.type != "cuda":
        return "resident"
    free, _total = torch.cuda.mem_get_info(device)
    on_device = sum(module_bytes(m) for m in parts.values() if _device_of(m) == device)
    free += on_device  # what we already hold there counts as available to us
    act = ACTIVATION_BYTES_PER_TILE * tiles_per_batch + MARGIN_BYTES
    if sum(module_bytes(m) for m in parts.values()) + act <= free:
        return "resident"
    biggest = max((module_bytes(m) for m in parts.values()), default=0)
    return "model_offload" if biggest + act <= free else "sequential"


def _device_of(module: torch.nn.Module) -> torch.device | None:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else None


class Placement:
    def __init__(self, mode: Mode, device: torch.device, parts: Mapping[str, torch.nn.Module]) -> None:
        self.mode: Mode = mode
        self.device = torch.device(device)
        self.parts = dict(parts)
        self._hooked: set[str] = set()

    @contextmanager
    def active(self, name: str) -> Iterator[torch.nn.Module]:
        """The part ``name``, ready to run on the device (others moved away as the mode wants)."""
        module = self.parts[name]
        if self.mode == "resident":
            self._to(name, self.device)
        elif self.mode == "sequential" and name in STREAMED:
            self._offload_others(name)
            self._hook(name)
        else:
            self._offload_others(name)
            self._to(name, self.device)
        yield module

    def escalate(self) -> bool:
        """Move to the next leaner mode; False when already at the leanest."""
        i = MODES.index(self.mode)
        if i + 1 >= len(MODES):
            return False
        self.mode = MODES[i + 1]
        log.warning("FLUX memory: falling back to %s", self.mode)
        for name in self.parts:  # whatever is not needed right now leaves the device
            self._to(name, torch.device("cpu"))
        _empty_cache(self.device)
        return True

    def release(self) -> None:
        """End of the stage: unhook; in the lean modes give the device memory back."""
        for name in list(self._hooked):
            self._unhook(name)
        if self.mode != "resident":
            for name in self.parts:
                self._to(name, torch.device("cpu"))
            _empty_cache(self.device)

    # ------------------------------------------------------------------------------- internals

    def _offload_others(self, keep: str) -> None:
        for name in self.parts:
            if name != keep:
                self._to(name, torch.device("cpu"))

    def _to(self, name: str, device: torch.device) -> None:
        if name in self._hooked:
            if device.type == "cpu":
                self._unhook(name)
            return
        module = self.parts[name]
        if _device_of(module) != device:
            module.to(device)

    def _hook(self, name: str) -> None:
        if name in self._hooked:
            return
        from accelerate import cpu_offload

        module = self.parts[name]
        module.to("cpu")  # the hooks keep a map of the weights where they are now: that must be RAM
        cpu_offload(module, execution_device=self.device)
        self._hooked.add(name)

    def _unhook(self, name: str) -> None:
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(self.parts[name], recurse=True)  # puts the weights back, on the CPU
        self._hooked.discard(name)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
