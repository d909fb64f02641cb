"""SUPIR sampling cost on a GPU: full-size SDXL UNet + control encoder + connectors with random bf16
weights (built on the device, no files), 1024 -> 2048 output (256x256 latent, 128-latent tiles at
stride 64 = 9 tiles), EDM Euler at the default 45 steps with CFG.

Prints, per memory mode: wall time of the sampling, the sum of the model forward times measured in the
same run (CUDA events around every denoiser call), their ratio (target <= 1.10: the loop, tiling and
fusing add little) and the peak device memory. Usage:

    python bench/bench_supir_gpu.py                      # resident and offload, 45 steps
    python bench/bench_supir_gpu.py --modes sequential --steps 2
    python bench/bench_supir_gpu.py --tiny --device cpu  # smoke test of the script itself
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.models.meta import empty
from pipeline.models.sdxl.arch import UNetArch, unet_config
from pipeline.models.sdxl.load import build_unet
from pipeline.models.supir.connectors import build_connectors
from pipeline.models.supir.control import ControlEncoder
from pipeline.models.supir.denoiser import CfgDenoiser, TextCond
from pipeline.models.supir.pipeline import placement
from pipeline.models.supir.unet import SupirUNet
from pipeline.samplers import edm_euler
from pipeline.samplers.noise import SeededNoise
from pipeline.samplers.schedules import ddpm_sigma_table, legacy_sigmas
from pipeline.samplers.tiles import LatentTiles

SDXL = UNetArch(in_channels=4, out_channels=4, widths=(320, 640, 1280), layers=2, attention=(False, True, True),
                depth=(1, 2, 10), context_dim=2048, adm_in_channels=2816)
TINY = UNetArch(in_channels=4, out_channels=4, widths=(32, 64, 64), layers=2, attention=(False, True, True),
                depth=(1, 1, 1), context_dim=192, adm_in_channels=112, add_time_dim=8)


def random_on(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Materialise a meta-built module directly on ``device`` with small random weights."""
    module = module.to_empty(device=device)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.data = torch.empty_like(p.data, dtype=dtype)  # not module.to(): diffusers warns on casts
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias") or "norm" in name:
                p.zero_()
            else:
                p.normal_(0, 0.02)
    return module.eval().requires_grad_(False)


class Timed:
    """Wraps the CFG denoiser and sums the device time of every call."""

    def __init__(self, inner: CfgDenoiser, device: torch.device) -> None:
        self.inner, self.device, self.total, self.calls = inner, device, 0.0, 0

    def __call__(self, *args, **kw):
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.inner(*args, **kw)
            end.record()
            end.synchronize()
            self.total += start.elapsed_time(end) / 1000
        else:
            t0 = time.perf_counter()
            out = self.inner(*args, **kw)
            self.total += time.perf_counter() - t0
        self.calls += 1
        return out


def bench(mode: str, arch: UNetArch, device: torch.device, dtype: torch.dtype, steps: int, latent: int,
          tile_batch: int) -> dict:
    torch.manual_seed(0)
    home = device if mode == "resident" else torch.device("cpu")
    unet = SupirUNet(random_on(empty(lambda: build_unet(arch)), home, dtype),
                     random_on(empty(lambda: build_connectors(arch)), home, dtype))
    control = random_on(empty(lambda: ControlEncoder(unet_config(arch))), home, dtype)
    place = placement(mode, device, {"unet": unet, "control": control})
    g = torch.Generator().manual_seed(1)
    cond = TextCond(torch.randn(1, 77, arch.context_dim, generator=g), torch.randn(1, arch.adm_in_channels, generator=g))
    uncond = TextCond(torch.randn(1, 77, arch.context_dim, generator=g), torch.randn(1, arch.adm_in_channels, generator=g))
    z_lq = torch.randn(1, 4, latent, latent, generator=g).to(device)
    tiles = LatentTiles.plan(latent, latent, tile=128 if arch is SDXL else 16, stride=64 if arch is SDXL else 8)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with place.active("unet", "control"), torch.inference_mode():
        model = Timed(CfgDenoiser(unet, control, ddpm_sigma_table().to(device), cond, uncond, z_lq), device)
        x_t = torch.randn(z_lq.shape, generator=g).to(device)
        out = edm_euler.sample(model, x_t, legacy_sigmas(steps), edm_euler.EdmParams(), noise=SeededNoise(2, device),
                               tiles=tiles, tile_batch=tile_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    assert torch.isfinite(out).all()
    return {"mode": mode, "wall": wall, "forward": model.total, "calls": model.calls, "peak": peak,
            "tiles": len(tiles) if tiles else 1, "tile_batch": tile_batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="resident,offload", help="comma list of resident, offload, sequential")
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--tile-batch", type=int, default=0, help="tiles per call (default: 4 resident, else 1)")
    ap.add_argument("--tiny", action="store_true", help="tiny widths (smoke test of the script)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    arch, latent = (TINY, 40) if args.tiny else (SDXL, 256)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# SUPIR sampling bench on {name}: {'tiny' if args.tiny else 'full-size SDXL + SUPIR'}, {dtype}, "
          f"{latent * 8}px output, {args.steps} EDM steps")
    print(f"{'mode':<11}{'tiles':>6}{'batch':>6}{'calls':>7}{'wall s':>9}{'sum fwd s':>11}{'ratio':>7}{'peak GiB':>10}")
    for mode in args.modes.split(","):
        tb = args.tile_batch or (4 if mode == "resident" and device.type == "cuda" else 1)
        r = bench(mode.strip(), arch, device, dtype, args.steps, latent, tb)
        print(f"{r['mode']:<11}{r['tiles']:>6}{r['tile_batch']:>6}{r['calls']:>7}{r['wall']:>9.2f}{r['forward']:>11.2f}"
              f"{r['wall'] / max(r['forward'], 1e-9):>7.3f}{r['peak']:>10.2f}")
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
