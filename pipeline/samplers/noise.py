"""Where a sampler's random numbers come from.

Samplers ask ``noise(purpose, shape)`` for plain N(0, 1) draws ("x_T", "churn", "posterior") and
``noise.sde(shape, sigma_min, sigma_max, device)`` for the SDE noise of DPM++ 2M SDE, a function of the
step's (sigma, sigma_next). Every sampler asks for all of its noise before its step loop and keeps it on
the device, so the loop never waits for the host.

- ``SeededNoise``: plain draws from one CPU generator in call order (a seed gives the same x_T on any
  device); SDE noise from a Brownian tree whose entropy is the generator's next draw (``BrownianNoise``).
- ``RecordedNoise``: hands out given tensors per purpose, which is how the parity tests replay the
  reference implementation's draws (its SDE noise too, or a Brownian tree of a given entropy).
- ``BrownianNoise``: k-diffusion's ``BrownianTreeNoiseSampler`` (what SUPIR's DPM++ samplers use): one
  ``torchsde.BrownianTree`` over [sigma_min, sigma_max]; the noise of a step is the tree's increment
  over (sigma_next, sigma), normalised to unit variance. Increments over disjoint intervals are
  independent normals, but unlike independent draws they depend on the interval only, not on how many
  steps came before. The tree draws on the device of its tensors: on CUDA from the CUDA generator, so
  a CUDA run's SDE noise differs from a CPU run's with the same seed (equally valid, not equal).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch

SdeNoise = Callable[[float, float], torch.Tensor]  # (sigma, sigma_next) -> unit-variance noise
ENTROPY_RANGE = 2**63 - 1  # k-diffusion's BatchedBrownianTree: torch.randint(0, 2**63 - 1, [])


class NoiseSource(Protocol):
    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor: ...

    def sde(self, shape: Sequence[int], sigma_min: float, sigma_max: float,
            device: torch.device) -> SdeNoise: ...


def brownian_entropy(seed: int) -> int:
    """The tree entropy k-diffusion draws after ``torch.manual_seed(seed)`` (its first randint)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return int(torch.randint(0, ENTROPY_RANGE, (), generator=gen).item())


class BrownianNoise:
    """SDE noise from one Brownian tree over [sigma_min, sigma_max] (see the module docstring)."""

    def __init__(self, shape: Sequence[int], sigma_min: float, sigma_max: float, entropy: int,
                 device: torch.device | str = "cpu") -> None:
        import torchsde

        w0 = torch.zeros(tuple(shape), dtype=torch.float32, device=device)
        self.tree = torchsde.BrownianTree(float(sigma_min), w0, float(sigma_max), entropy=entropy)

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        lo, hi = sorted((float(sigma), float(sigma_next)))
        # the float32 Karras end points can sit a rounding step outside the tree's range (which torchsde
        # rounds to its tolerance): it clamps them, as in the reference, and warns, which is noise here;
        # the divisor keeps the unclamped sigmas
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            w: torch.Tensor = self.tree(lo, hi)  # pyright: ignore[reportAssignmentType] (W alone: no U, A)
        if sigma > sigma_next:
            w = -w
        span = (torch.tensor(sigma_next, dtype=torch.float32) - torch.tensor(sigma, dtype=torch.float32)).abs()
        return w / span.sqrt().item()


class SeededNoise:
    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(seed)
        self.device = torch.device(device)

    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.gen, dtype=torch.float32).to(self.device)

    def sde(self, shape: Sequence[int], sigma_min: float, sigma_max: float, device: torch.device) -> SdeNoise:
        entropy = int(torch.randint(0, ENTROPY_RANGE, (), generator=self.gen).item())
        return BrownianNoise(shape, sigma_min, sigma_max, entropy, device)


class RecordedNoise:
    """Given draws per purpose, in order; SDE noise from the "sde" draws, or from a Brownian tree of
    ``entropy`` when there are none."""

    def __init__(self, draws: Mapping[str, Sequence[torch.Tensor]], *, entropy: int | None = None) -> None:
        self.queues = {k: list(v) for k, v in draws.items()}
        self.entropy = entropy

    def __call__(self, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        queue = self.queues.get(purpose)
        if not queue:
            raise AssertionError(f"no recorded '{purpose}' noise left")
        t = queue.pop(0)
        if tuple(t.shape) != tuple(shape):
            raise AssertionError(f"recorded '{purpose}' noise is {tuple(t.shape)}, asked for {tuple(shape)}")
        return t

    def sde(self, shape: Sequence[int], sigma_min: float, sigma_max: float, device: torch.device) -> SdeNoise:
        if "sde" not in self.queues and self.entropy is not None:
            return BrownianNoise(shape, sigma_min, sigma_max, self.entropy, device)
        return lambda sigma, sigma_next: self("sde", shape)
