"""One tolerance rule for every comparison against reference numbers (golden tensors, reference
forwards, original models), stated once.

float32 results differ between CPUs (vector widths, BLAS kernels, thread counts change the summation
order), so no bound is absolute: each is relative to the reference's own scale,
``max|ours - ref| <= tol * max(max|ref|, FLOOR)``:

- ``MODEL`` (1e-4): one float32 forward of a model or a deterministic function (control encoder,
  UNet, transformer, VAE, text encoder, colour fix). The fixtures' own fp32 rounding floor is ~1e-6.
- ``SAMPLER`` (1e-3): whole sampler runs and end-to-end pipelines, where per-step differences compound.
- ``RECORDED_RUN`` (1e-4, tighter on purpose): sampler runs fed the reference's recorded noise. Their
  state is dominated by the noise (|x| ~ 10-60) while the network adds a small eps each step, so at
  1e-3 a network with a weight off by 1e-3, or a sigma one table step off, still passed (measured
  2e-4 and 3e-4). The worst cross-CPU difference measured on these runs is ~1e-5 (AVX512 vs the
  default kernels, 1 vs 2 threads), so 1e-4 keeps a ~10x margin and can fail.

- ``NOISE`` (1e-5): Brownian-tree noise (torchsde's bridge: float32 sqrt, products and sums) against
  the reference's recorded sequence. Bit-exact on AVX512 with 1 or 2 threads, 3.5e-7 with the portable
  kernels (ATEN_CPU_CAPABILITY=default); a sigma one table step off gives O(1).

- ``DEQUANT`` (0, exact): GGUF block dequantisation against the ``gguf`` package's numpy reference,
  and a scaled-fp8 model against its own dequantisation: the same float32 products in the same order.
- ``QUANTISED`` (1e-2): a forward of a GGUF-quantised (Q8_0, Q4_K) transformer against the fp32 model
  it was written from (issue 15's bound). Measured on the tiny model: Q8_0 2.8e-3, Q4_K_M 4.7e-3.

``FLOOR`` keeps an all-zero reference from demanding an exact zero. Each family also has a negative
control (:func:`assert_rejected`): a 1e-3 relative perturbation of one weight, or a sigma moved by one
schedule step, must fail the same check, so a bound that cannot fail is caught.

Every check records the largest relative error per family; the session prints them at the end
(``conftest.pytest_terminal_summary``) together with the CPU kernel path and thread count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

MODEL = 1e-4
SAMPLER = 1e-3
RECORDED_RUN = 1e-4
NOISE = 1e-5
DEQUANT = 0.0
QUANTISED = 1e-2
FLOOR = 1e-6

# family -> (largest relative error seen, the comparison that produced it)
WORST: dict[str, tuple[float, str]] = {}


def relative_error(ours: torch.Tensor | float, ref: torch.Tensor) -> float:
    """max|ours - ref| / max(max|ref|, FLOOR), in float64."""
    ours = torch.as_tensor(ours).detach().cpu()
    ref = torch.as_tensor(ref).detach().cpu()
    assert ours.numel() == ref.numel(), f"{ours.numel()} values vs {ref.numel()} in the reference"
    ours = ours.reshape(ref.shape).double()
    err = (ours - ref.double()).abs().max().item()
    scale = max(ref.double().abs().max().item(), FLOOR)
    return err / scale


def assert_parity(ours: torch.Tensor | float, ref: torch.Tensor, tol: float, name: str, *,
                  family: str) -> float:
    """Fail unless ``max|ours - ref| <= tol * max|ref|``; integer references must match exactly.
    Returns the relative error so a caller can report it."""
    ours_t = torch.as_tensor(ours).detach().cpu()
    assert ours_t.numel() == ref.numel(), f"{name}: shape {tuple(ours_t.shape)} vs {tuple(ref.shape)}"
    if not ref.is_floating_point():
        assert torch.equal(ours_t.reshape(ref.shape).to(ref.dtype), ref), f"{name}: {ours_t.tolist()} != {ref.tolist()}"
        return 0.0
    rel = relative_error(ours_t, ref)
    if rel > WORST.get(family, (-1.0, ""))[0]:
        WORST[family] = (rel, name)
    assert rel <= tol, f"{name}: relative error {rel:.3g} > bound {tol:g} (max|ref| = {ref.abs().max().item():.3g})"
    return rel


def assert_rejected(ours: torch.Tensor | float, ref: torch.Tensor, tol: float, name: str) -> float:
    """The negative control: the same check must FAIL for a result that is known to be wrong."""
    rel = relative_error(ours, ref)
    assert rel > tol, (f"{name}: a deliberately wrong result passed the parity bound "
                       f"(relative error {rel:.3g} <= {tol:g}); the tolerance cannot fail")
    return rel


@contextlib.contextmanager
def perturbed(param: torch.Tensor, rel: float = 1e-3) -> Iterator[None]:
    """Scale one weight tensor by (1 + rel) in place and put the exact original back afterwards."""
    saved = param.detach().clone()
    with torch.no_grad():
        param.mul_(1.0 + rel)
    try:
        yield
    finally:
        with torch.no_grad():
            param.copy_(saved)


def kernel_path() -> str:
    """The settings that decide float32 summation order on this run, for the report."""
    import os

    cap = os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()
    return f"ATEN_CPU_CAPABILITY={cap}, threads={torch.get_num_threads()}"
