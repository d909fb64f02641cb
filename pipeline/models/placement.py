"""Where models sit while a job runs: the three memory modes.

- ``resident``: everything on the device for the whole job (fastest, most memory).
- ``offload``: models wait in CPU memory and move to the device only for their phase (text encoders,
  then UNet + control encoder for sampling, then the VAE); diffusers' "model CPU offload".
- ``sequential``: weights stay in CPU memory and stream to the device one submodule at a time
  (accelerate's ``cpu_offload`` hooks); least device memory, slowest.
On a CPU every mode is the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

Mode = Literal["resident", "offload", "sequential"]


def auto_mode(device: torch.device, need_bytes: int) -> Mode:
    """Resident when the weights and about 6 GB of work space fit in free memory, else offload when
    the diffusion models alone fit, else sequential."""
    if device.type != "cuda":
        return "resident"
    free, _ = torch.cuda.mem_get_info(device)
    if free > need_bytes + (6 << 30):
        return "resident"
    return "offload" if free > need_bytes * 0.8 + (3 << 30) else "sequential"


class Placement:
    def __init__(self, mode: Mode, device: torch.device) -> None:
        self.mode: Mode = mode if device.type == "cuda" else "resident"
        self.device = device
        self._hooked: set[int] = set()

    @contextlib.contextmanager
    def use(self, *modules: nn.Module | None) -> Iterator[None]:
        mods = [m for m in modules if m is not None]
        if self.mode == "sequential":
            from accelerate import cpu_offload

            for m in mods:
                if id(m) not in self._hooked:
                    cpu_offload(m, execution_device=self.device)
                    self._hooked.add(id(m))
            yield
            return
        for m in mods:
            m.to(self.device)
        try:
            yield
        finally:
            if self.mode == "offload":
                for m in mods:
                    m.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def release(self, *modules: nn.Module | None) -> None:
        """Send models back to the CPU at the end of a job (offload modes keep nothing on the device)."""
        if self.mode == "offload":
            for m in modules:
                if m is not None:
                    m.to("cpu")
