"""Where a model family's parts sit while a job runs: the three memory modes, shared by SUPIR and FLUX.

Modes, from fastest to leanest (the three diffusers pipelines offer, applied to our named parts):

- ``resident``: every part on the device for the whole job (fastest, most memory);
- ``model_offload`` (SUPIR's params call it ``offload``): parts wait in CPU memory and move to the device
  only while in use (diffusers' "model CPU offload");
- ``sequential``: the big parts stay in CPU memory and stream to the device one submodule at a time
  through accelerate's ``cpu_offload`` hooks; least device memory, slowest.

Two policies differ between the families because their calls differ, so both are options here:

- ``eager``: a part leaves the device as soon as its ``active`` block ends. SUPIR enters each phase
  (text encoders, first stage, sampling, decode) once per job, so the next phase gets the memory at once.
  Lazy (the default) keeps a part on the device until another part needs the room: FLUX enters
  ``active("transformer")`` once per tile batch, and moving 24 GB in and out per call would dominate.
- ``streamed``: which parts get the hooks in sequential mode (FLUX: only transformer and T5; the VAE and
  CLIP are small enough to move whole). ``None`` (SUPIR) hooks every part.

When a stage runs out of memory, ``pipeline.memory_policy`` runs it again in the next leaner mode.
``retire`` sends parts that are done for the job (FLUX's text encoders once the prompts are encoded)
back to the CPU and forgets them. Every move is recorded (``moves``, and ``on_device``: what the device
holds now), on the CPU too, where the moves are logical, so tests can check them.
``choose_mode`` turns ``auto`` into a mode from the free device memory and what the
caller says each mode needs (each family estimates its own: see ``flux/engine`` and ``stages/supir``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import torch

from ..errors import InvalidParameter
from .cache import module_bytes

log = logging.getLogger("dermis.models")

Mode = Literal["resident", "model_offload", "sequential"]
MODES: tuple[Mode, ...] = ("resident", "model_offload", "sequential")
ALIASES: dict[str, Mode] = {"offload": "model_offload"}  # supir.memory's name for it (docs/supir.md)


def mode_of(name: str) -> Mode:
    """A mode by its name or alias; anything else is an InvalidParameter naming the choices."""
    if name in MODES:
        return name  # type: ignore[return-value]
    if name in ALIASES:
        return ALIASES[name]
    raise InvalidParameter(f"memory must be auto, {', '.join(MODES)}; not {name!r}.")


def choose_mode(requested: str, device: torch.device, *, resident: float, offload: float,
                held: int = 0) -> Mode:
    """``requested`` as a mode; ``auto`` picks the fastest whose need fits the free device memory.

    ``resident``: device bytes to hold every part plus the work space; ``offload``: the same for the
    biggest phase alone. ``held``: bytes of this family's own weights already on the device, counted as
    free (FLUX counts them; SUPIR's estimate predates it and passes 0). Off CUDA ``auto`` is resident.
    """
    if requested != "auto":
        return mode_of(requested)
    if device.type != "cuda":
        return "resident"
    free, _total = torch.cuda.mem_get_info(device)
    free += held
    if resident <= free:
        return "resident"
    return "model_offload" if offload <= free else "sequential"


def held_bytes(parts: Mapping[str, torch.nn.Module], device: torch.device) -> int:
    """Bytes of ``parts`` already on ``device`` (what a cached resident model holds there)."""
    return sum(module_bytes(m) for m in parts.values() if _device_of(m) == device)


def _device_of(module: torch.nn.Module) -> torch.device | None:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else None


class Placement:
    """Moves named parts between the CPU and ``device`` as ``mode`` wants; ``active`` wraps each use.

    The mode is applied as given on any device (on the CPU every mode is the same placement, but the
    code paths, hooks included, still run, which is what the tests exercise); a caller that wants to
    skip them off CUDA passes ``resident`` there.
    """

    def __init__(self, mode: str, device: torch.device | str, parts: Mapping[str, torch.nn.Module], *,
                 streamed: Collection[str] | None = None, eager: bool = False, label: str = "model") -> None:
        self.mode: Mode = mode_of(mode)
        self.label = label  # the family, in log lines
        self.device = torch.device(device)
        self.parts = dict(parts)
        self.streamed = None if streamed is None else frozenset(streamed)
        self.eager = eager
        self._hooked: set[str] = set()
        # where each part is meant to be ("device" / "host"): on a CPU-only run both are the CPU
        self._where = {n: self._initial(m) for n, m in self.parts.items()}
        self.moves: list[tuple[str, str]] = []  # (part, "device" | "host") in order

    def add(self, **parts: torch.nn.Module) -> None:
        """Parts that join for a while (text encoders for the prompts), placed like the others."""
        for name, module in parts.items():
            self.parts[name] = module
            self._where[name] = self._initial(module)

    def retire(self, *names: str) -> None:
        """Parts done for this job: back to the CPU (unhooked), no longer placed."""
        for name in names:
            if name in self.parts:
                self._to(name, host=True)
                del self.parts[name]
                self._where.pop(name, None)
        _empty_cache(self.device)

    def on_device(self) -> set[str]:
        """The parts the device holds now (hooked, streaming parts count as not held)."""
        return {n for n, w in self._where.items() if w == "device" and n not in self._hooked}

    def device_bytes(self) -> int:
        return sum(module_bytes(self.parts[n]) for n in self.on_device())

    @contextmanager
    def active(self, *names: str) -> Iterator[None]:
        """The parts ``names`` ready to run on the device for the block (others moved away as the mode
        wants; with ``eager`` model offload they go back to the CPU when the block ends)."""
        if self.mode == "resident":
            for name in names:
                self._to(name, host=False)
        else:
            self._offload_others(names)
            for name in names:
                if self.mode == "sequential" and self._streams(name):
                    self._hook(name)
                else:
                    self._to(name, host=False)
        try:
            yield
        finally:
            if self.eager and self.mode == "model_offload":
                for name in names:
                    self._to(name, host=True)
                _empty_cache(self.device)

    def release(self) -> None:
        """End of the stage: unhook (cached models must come back whole for the next job's placement);
        in the lean modes give the device memory back."""
        for name in list(self._hooked):
            self._unhook(name)
        if self.mode != "resident":
            for name in self.parts:
                self._to(name, host=True)
            _empty_cache(self.device)

    # ------------------------------------------------------------------------------- internals

    def _initial(self, module: torch.nn.Module) -> str:
        return "device" if self.device.type != "cpu" and _device_of(module) == self.device else "host"

    def _streams(self, name: str) -> bool:
        return self.streamed is None or name in self.streamed

    def _offload_others(self, keep: Collection[str]) -> None:
        for name in self.parts:
            if name not in keep:
                self._to(name, host=True)

    def _to(self, name: str, *, host: bool) -> None:
        where = "host" if host else "device"
        if self._where.get(name) != where:
            self._where[name] = where
            self.moves.append((name, where))
        if name in self._hooked:
            if host:
                self._unhook(name)
            return
        module = self.parts[name]
        device = torch.device("cpu") if host else self.device
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
