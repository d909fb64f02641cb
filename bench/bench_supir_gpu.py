"""SUPIR Stage 1 cost on a GPU: full-size SDXL UNet + control encoder + connectors and the SDXL VAE with
random bf16 weights (built on the device, no files), 1024 -> 2048 output (256x256 latent), the workflow's
sampler (DPM++ 2M SDE with Brownian-tree noise, CFG, 45 steps).

Prints, for sampling untiled (what the workflow does at 2048²) and with forced 128-latent tiles (stride
64, 9 tiles in balanced batches): the wall time of the sampling, the sum of the model forward times in
the same run (CUDA events around every denoiser call), their ratio (goal <= 1.10: the loop, noise,
tiling and fusing add little) and the peak device memory. ``--vae`` also times the VAE passes at the
output size (denoise encoder + decoder = the first stage, and the final decode), untiled and in 512 px
tiles with synchronised GroupNorm statistics. Usage:

    python bench/bench_supir_gpu.py                          # untiled and tiled, resident, 45 steps
    python bench/bench_supir_gpu.py --modes offload --tiling tiles --tile-batch 2
    python bench/bench_supir_gpu.py --tiny --device cpu --steps 3 --vae   # smoke test of the script
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from pipeline.models.meta import empty
from pipeline.models.sdxl import vae_tiled
from pipeline.models.sdxl.arch import UNetArch, VaeArch, unet_config
from pipeline.models.sdxl.load import build_unet, build_vae
from pipeline.models.supir.budget import DEFAULT_TILE
from pipeline.models.supir.connectors import build_connectors
from pipeline.models.supir.control import ControlEncoder
from pipeline.models.supir.denoiser import CfgDenoiser, TextCond
from pipeline.models.supir.pipeline import placement
from pipeline.models.supir.unet import SupirUNet
from pipeline.samplers import dpmpp_2m_sde, edm_euler
from pipeline.samplers.noise import SeededNoise
from pipeline.samplers.schedules import ddpm_sigma_table, dpm_schedule, legacy_sigmas
from pipeline.samplers.tiles import LatentTiles

SDXL = UNetArch(in_channels=4, out_channels=4, widths=(320, 640, 1280), layers=2, attention=(False, True, True),
                depth=(1, 2, 10), context_dim=2048, adm_in_channels=2816)
SDXL_VAE = VaeArch(widths=(128, 256, 512, 512), layers=2, latent_channels=4)
TINY = UNetArch(in_channels=4, out_channels=4, widths=(32, 64, 64), layers=2, attention=(False, True, True),
                depth=(1, 1, 1), context_dim=192, adm_in_channels=112, add_time_dim=8)
TINY_VAE = VaeArch(widths=(32, 32, 64, 64), layers=1, latent_channels=4)


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
    """Wraps a callable and sums the device time of every call (CUDA events; wall time on the CPU)."""

    def __init__(self, inner: Callable, device: torch.device) -> None:
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def _reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_sampling(mode: str, tiled: bool, arch: UNetArch, device: torch.device, dtype: torch.dtype, steps: int,
                   latent: int, tile_batch: int, sampler: str) -> dict:
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
    tile = DEFAULT_TILE if arch is SDXL else 16
    tiles = LatentTiles.plan(latent, latent, tile=tile, stride=tile // 2) if tiled else None
    noise = SeededNoise(2, device)
    _reset(device)
    _sync(device)
    t0 = time.perf_counter()
    with place.active("unet", "control"), torch.inference_mode():
        model = Timed(CfgDenoiser(unet, control, ddpm_sigma_table(), cond, uncond, z_lq), device)
        x_t = noise("x_T", z_lq.shape)
        if sampler == "edm":
            out = edm_euler.sample(model, x_t, legacy_sigmas(steps), edm_euler.EdmParams(), noise=noise,
                                   tiles=tiles, tile_batch=tile_batch)
        else:
            out = dpmpp_2m_sde.sample(model, x_t, dpm_schedule(steps), dpmpp_2m_sde.DpmParams(), noise=noise,
                                      tiles=tiles, tile_batch=tile_batch)
        _sync(device)
    wall = time.perf_counter() - t0
    assert torch.isfinite(out).all()
    place.release()
    batches = "+".join(str(len(b)) for b in tiles.batches(tile_batch)) if tiles else "1"
    return {"what": f"{mode}, {'tiled' if tiled else 'untiled'}", "batches": batches, "wall": wall,
            "forward": model.total, "calls": model.calls, "peak": _peak(device)}


def bench_vae(arch: VaeArch, device: torch.device, dtype: torch.dtype, size: int, tile: int) -> list[dict]:
    torch.manual_seed(0)
    vae = random_on(empty(lambda: build_vae(arch)), device, dtype)
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1
    rows = []
    for label, t in (("untiled", 0), (f"{tile} px tiles", tile)):
        _reset(device)
        with torch.inference_mode():
            _sync(device)
            t0 = time.perf_counter()
            z = vae_tiled.encode_moments(vae, vae.encoder, x, tile=t).chunk(2, dim=1)[0]
            _sync(device)
            t1 = time.perf_counter()
            img = vae_tiled.decode(vae, z, tile=t)
            _sync(device)
            t2 = time.perf_counter()
        assert torch.isfinite(img).all()
        rows.append({"what": f"VAE {label}", "encode": t1 - t0, "decode": t2 - t1, "peak": _peak(device)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="resident", help="comma list of resident, offload, sequential")
    ap.add_argument("--tiling", default="untiled,tiles", help="comma list of untiled, tiles")
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--sampler", choices=("dpmpp_2m_sde", "edm"), default="dpmpp_2m_sde")
    ap.add_argument("--tile-batch", type=int, default=5, help="most tiles per call when tiled (9 tiles: 5 + 4)")
    ap.add_argument("--vae", action="store_true", help="also time the VAE passes untiled and tiled")
    ap.add_argument("--tiny", action="store_true", help="tiny widths (smoke test of the script)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # tiny: a 32² latent in 16-latent tiles at stride 8 is 2048²'s layout (9 tiles) at 1/8 the size
    arch, vae_arch, latent = (TINY, TINY_VAE, 32) if args.tiny else (SDXL, SDXL_VAE, 256)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# SUPIR Stage 1 bench on {name}: {'tiny' if args.tiny else 'full-size SDXL + SUPIR'}, {dtype}, "
          f"{latent * 8}px output, {args.steps} {args.sampler} steps")
    print(f"{'run':<22}{'batches':>9}{'calls':>7}{'wall s':>9}{'sum fwd s':>11}{'ratio':>7}{'peak GiB':>10}")
    for mode in args.modes.split(","):
        for tiling in args.tiling.split(","):
            r = bench_sampling(mode.strip(), tiling.strip() == "tiles", arch, device, dtype, args.steps, latent,
                               args.tile_batch, args.sampler)
            print(f"{r['what']:<22}{r['batches']:>9}{r['calls']:>7}{r['wall']:>9.2f}{r['forward']:>11.2f}"
                  f"{r['wall'] / max(r['forward'], 1e-9):>7.3f}{r['peak']:>10.2f}")
    if args.vae:
        print(f"{'run':<22}{'encode s':>9}{'decode s':>10}{'peak GiB':>10}")
        for r in bench_vae(vae_arch, device, dtype, latent * 8, vae_tiled.AUTO_TILE if not args.tiny else 128):
            print(f"{r['what']:<22}{r['encode']:>9.2f}{r['decode']:>10.2f}{r['peak']:>10.2f}")


if __name__ == "__main__":
    main()
