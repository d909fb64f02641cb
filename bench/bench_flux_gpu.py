"""Stage 2 (flux_refine) on a lent GPU: is the wall time close to the sum of its forward passes?

Builds the FULL-size FLUX.1-dev transformer (11.9 B parameters) and the FLUX autoencoder with random
bf16 weights directly on the device (no download, nothing read from disk), then runs the real refine
engine the stage uses on a 2048² image: 2x2 tiles of 1088² (128 px overlap), 20 executed steps at
denoise 0.3 (ComfyUI semantics), latent MultiDiffusion, guidance 3.0. Prompt embeddings are random
tensors of the real shapes (T5 and CLIP run once per job and are not part of the loop measured here).

Prints per memory mode (sequential runs 2 steps unless told otherwise): (a) wall time of the stage's engine call, (b) the sum of transformer and VAE
forward times measured inside that same call (CUDA-synchronised hooks), (c) their ratio (target
<= 1.10: the engine adds almost nothing around the model calls), (d) peak VRAM.

    python bench/bench_flux_gpu.py                      # resident, model_offload, sequential
    python bench/bench_flux_gpu.py --modes resident --steps 20 --size 2048
    python bench/bench_flux_gpu.py --toy --device cpu   # the same code path with a tiny model (smoke test)

Random weights make the picture meaningless; the work (shapes, FLOPs, memory traffic) is the real one.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import CancelToken  # noqa: E402
from pipeline.models.flux import engine  # noqa: E402
from pipeline.models.flux import memory as flux_memory  # noqa: E402
from pipeline.models.flux.arch import FLUX_DEV, FluxVaeArch  # noqa: E402
from pipeline.models.flux.text import Conditioning  # noqa: E402
from pipeline.models.flux.tiny import TRANSFORMER as TOY_TRANSFORMER  # noqa: E402
from pipeline.models.placement import MODES  # noqa: E402

TOY_VAE = FluxVaeArch(widths=(32, 32, 32, 32), layers=1)
FLUX_DEV_VAE = FluxVaeArch(widths=(128, 256, 512, 512), layers=2)


class Timer:
    """Accumulates synchronised wall time of calls (forward hooks or wrapped methods)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.total, self.calls, self._t0 = device, 0.0, 0, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, *args) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def stop(self, *args) -> None:
        self._sync()
        self.total += time.perf_counter() - self._t0
        self.calls += 1

    def wrap(self, fn):
        def timed(*a, **k):
            self.start()
            try:
                return fn(*a, **k)
            finally:
                self.stop()
        return timed


@torch.no_grad()
def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights of a plausible scale (1/sqrt(fan_in)), norms at 1, biases at 0: no inf/NaN in bf16."""
    g = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            fan_in = math.prod(p.shape[1:])
            p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)


def build_parts(device: torch.device, dtype: torch.dtype, toy: bool):
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    arch = TOY_TRANSFORMER if toy else FLUX_DEV
    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(arch.to_diffusers())
    # bf16 while still on meta, then allocate once on the device: no fp32 copy (47.6 GB), no CPU copy
    transformer = (transformer.to(dtype) if dtype != torch.float32 else transformer).to_empty(device=device)
    _randomise(transformer, 0)
    with torch.device("meta"):
        vae = AutoencoderKL(**(TOY_VAE if toy else FLUX_DEV_VAE).to_diffusers())
    vae = (vae.to(dtype) if dtype != torch.float32 else vae).to_empty(device=device)
    _randomise(vae, 1)
    return transformer.eval().requires_grad_(False), vae.eval().requires_grad_(False), arch


def run_mode(mode: str, args, transformer, vae, arch, device: torch.device, dtype: torch.dtype) -> dict:
    steps = args.sequential_steps if mode == "sequential" and args.sequential_steps else args.steps
    settings = engine.RefineSettings(steps=steps, denoise=args.denoise, guidance=3.0, tile=args.tile,
                                     overlap=128, rows=args.rows, cols=args.cols, tile_batch=args.tile_batch)
    if mode != "resident":
        transformer.to("cpu")
        vae.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    placement = flux_memory.placement(mode, device, {"transformer": transformer, "vae": vae})
    g = torch.Generator().manual_seed(0)
    cond = Conditioning(torch.randn(1, args.text_tokens, arch.context_in_dim, generator=g),
                        torch.randn(1, arch.vec_in_dim, generator=g))
    t_timer, v_timer = Timer(device), Timer(device)
    hooks = [transformer.register_forward_pre_hook(t_timer.start), transformer.register_forward_hook(t_timer.stop)]
    codec = engine.LatentCodec(vae, placement, device, tiling=args.vae_tiling)
    codec.encode, codec.decode = v_timer.wrap(codec.encode), v_timer.wrap(codec.decode)
    velocity = engine.Velocity(transformer, placement, cond, None, settings, device, dtype, CancelToken())
    rgb = torch.rand(1, 3, args.size, args.size, generator=g)
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = engine.refine(rgb, codec=codec, velocity=velocity, settings=settings,
                            generator=torch.Generator().manual_seed(1), cancel=CancelToken())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    finally:
        for h in hooks:
            h.remove()
        placement.release()
    forwards = t_timer.total + v_timer.total
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    tiles = len(engine.frame_plan(args.size, args.size, settings))
    return dict(mode=mode, steps=steps, wall=wall, transformer=t_timer.total, vae=v_timer.total, forwards=forwards,
                ratio=wall / forwards if forwards else float("nan"), peak=peak, calls=t_timer.calls,
                tiles=tiles, finite=bool(torch.isfinite(out).all()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated from {', '.join(MODES)}")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--denoise", type=float, default=0.3)
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--cols", type=int, default=2)
    p.add_argument("--tile-batch", type=int, default=4)
    p.add_argument("--sequential-steps", type=int, default=2,
                   help="steps for the sequential mode, which streams all 24 GB of weights every call "
                        "(0 = --steps); its peak VRAM is the point, not its speed")
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--vae-tiling", action="store_true", help="decode/encode the frame in VAE tiles")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--toy", action="store_true", help="tiny model (checks the script, times nothing real)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU host, or use --toy --device cpu to check the script")
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown memory mode(s) {', '.join(sorted(unknown))}")

    t0 = time.perf_counter()
    transformer, vae, arch = build_parts(device, dtype, args.toy)
    n_params = sum(p.numel() for p in transformer.parameters())
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, torch "
          f"{torch.__version__}, transformer {n_params / 1e9:.3f} B params ({dtype}), built in "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"stage 2: {args.size}² frame, {args.rows}x{args.cols} tiles near {args.tile}², {args.steps} steps "
          f"at denoise {args.denoise}, batch {args.tile_batch}")
    if not args.no_warmup:  # kernels, cuBLAS handles and the allocator, outside the measured runs
        warm = argparse.Namespace(**{**vars(args), "steps": 1, "size": min(args.size, 1024), "rows": 1, "cols": 1})
        run_mode(modes[0], warm, transformer, vae, arch, device, dtype)
    rows = []
    for mode in modes:
        r = run_mode(mode, args, transformer, vae, arch, device, dtype)
        rows.append(r)
        if mode != "resident":
            transformer.to(device)  # the next mode starts from the device again
            vae.to(device)
    print(f"{'mode':<14}{'steps':>6}{'wall s':>9}{'transformer s':>15}{'vae s':>8}{'sum fwd s':>11}{'ratio':>8}"
          f"{'peak GiB':>10}{'calls':>7}{'tiles':>7}")
    for r in rows:
        print(f"{r['mode']:<14}{r['steps']:>6}{r['wall']:>9.2f}{r['transformer']:>15.2f}{r['vae']:>8.2f}{r['forwards']:>11.2f}"
              f"{r['ratio']:>8.3f}{r['peak'] / 2**30:>10.2f}{r['calls']:>7}{r['tiles']:>7}"
              + ("" if r["finite"] else "  (non-finite output!)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
