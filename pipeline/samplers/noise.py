"""Where a sampler's random numbers come from.

Samplers ask ``noise(purpose, shape)``; ``purpose`` names the draw ("x_T", "churn", "sde",
"posterior"). ``SeededNoise`` draws everything from one CPU generator in call order, so a seed gives
the same image on any device; ``RecordedNoise`` hands out given tensors per purpose, which is how the
parity tests replay the reference implementation's draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch


class NoiseSource(Protocol):
    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor: ...


class SeededNoise:
    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(seed)
        self.device = torch.device(device)

    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.gen, dtype=torch.float32).to(self.device)


class RecordedNoise:
    def __init__(self, draws: Mapping[str, Sequence[torch.Tensor]]) -> None:
        self.queues = {k: list(v) for k, v in draws.items()}

    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        queue = self.queues.get(purpose)
        if not queue:
            raise AssertionError(f"no recorded '{purpose}' noise left")
        t = queue.pop(0)
        if tuple(t.shape) != tuple(shape):
            raise AssertionError(f"recorded '{purpose}' noise is {tuple(t.shape)}, asked for {tuple(shape)}")
        return t
