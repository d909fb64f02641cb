"""The whole ``supir-srpo`` preset on a GPU, 1024² -> 2048², on full-size random-weight checkpoints
written in the real layouts (``_full_size.py``, on the device's disk), with the reference workflow's
settings (../shared/docs/reference/seed_workflow.md: SUPIR 45 steps, FLUX 20 steps at denoise 0.30 and
0.45 over 2x2 tiles of 1088², guidance 3.5, T5 256 tokens).

For each variant (``resident``, ``offload``, ``fp8``: the scaled-fp8 transformer kept fp8, ``gguf``: the
Q8_0 GGUF) and each of eager / compiled (regional compile of the FLUX blocks), after one warm-up run,
it prints per stage: wall time, the sum of model forward times inside it (CUDA-synchronised, outermost
model calls only), and peak allocated memory; then the job's total and peak. It also checks issue 15's
memory acceptance: when stage 2 starts sampling, the device holds at most transformer + VAE + 1 GB of
FLUX (the text encoders have left; other stages' cached models are reported apart).

The peer for exactly this job: ComfyUI 139.6 s warm, 48.5 GiB peak on an H200; the floor is ≈47 s eager
(../shared/docs/PERF_ANCHORS.md).

    python bench/bench_e2e_gpu.py --root /data/dermis-bench              # write the files, run everything
    python bench/bench_e2e_gpu.py --root /data/dermis-bench --variants resident --modes eager,compiled
    python bench/bench_e2e_gpu.py --tiny --device cpu                    # the same code on tiny models

Writing the full-size files takes a few minutes and ~70 GB of disk (``--skip-write`` reuses them);
one variant x mode run is about a minute on an H200 once the weights are in RAM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402
from pipeline.config import Config  # noqa: E402
from pipeline.models.cache import ModelCache, module_bytes  # noqa: E402

VARIANTS = {  # variant -> stage overrides for both FLUX stages (refine, final)
    "resident": {"memory": "resident"},
    "offload": {"memory": "model_offload"},
    "fp8": {"memory": "resident", "transformer": "unet/flux1-dev-fp8-e4m3fn-scaled.safetensors", "weight_dtype": "fp8"},
    "gguf": {"memory": "resident", "transformer": "unet/flux1-dev-Q8_0.gguf"},
}
TINY_STEPS = {"supir.steps": 3, "refine.steps": 2, "final.steps": 2}  # --tiny checks the code path, not speed
TINY_FILES = {"fp8": "unet/variants/flux1-dev-fp8-e4m3fn-scaled.safetensors", "gguf": "unet/variants/flux1-dev-Q8_0.gguf"}


class Probe:
    """Times the outermost model calls per stage, tracks per-stage peak memory, and records what the
    device holds when stage 2's transformer first runs."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.stage, self.depth, self.t0 = device, "", 0, 0.0
        self.forward: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.stage2_allocated: int | None = None
        self.hooked: set[int] = set()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_progress(self, p: pipeline.Progress) -> None:
        if p.stage and p.stage != self.stage and p.message.endswith("started"):
            self._close()
            self.stage = p.stage
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)

    def _close(self) -> None:
        if self.stage and self.device.type == "cuda":
            self.peak[self.stage] = torch.cuda.max_memory_allocated(self.device)

    def finish(self) -> None:
        self._close()

    def hook(self, models: ModelCache) -> None:
        for entry in models.entries():
            for module in _modules(entry.value):
                if id(module) not in self.hooked:
                    self.hooked.add(id(module))
                    module.register_forward_pre_hook(self._enter)
                    module.register_forward_hook(self._leave)

    def _enter(self, module: torch.nn.Module, args: object) -> None:
        if self.depth == 0:
            self.sync()
            self.t0 = time.perf_counter()
            if self.stage == "refine" and self.stage2_allocated is None and type(module).__name__.startswith("Flux"):
                self.stage2_allocated = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0
        self.depth += 1

    def _leave(self, module: torch.nn.Module, args: object, out: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.sync()
            self.forward[self.stage] = self.forward.get(self.stage, 0.0) + time.perf_counter() - self.t0


def _modules(value: object) -> list[torch.nn.Module]:
    """The modules a cache entry holds: itself, or the modules among a container's direct members
    (a dataclass of parts, a spandrel descriptor), as ``module_bytes`` counts them."""
    if isinstance(value, torch.nn.Module):
        return [value]
    members = value if isinstance(value, (list, tuple)) else vars(value).values() if hasattr(value, "__dict__") else []
    return [m for m in members if isinstance(m, torch.nn.Module)]


def run_once(root: Path, variant: str, compiled: bool, image: pipeline.Image, device: str, tiny: bool,
             models: ModelCache, probe: Probe | None) -> pipeline.RunResult:
    overrides: dict[str, object] = {}
    for stage in ("refine", "final"):
        for k, v in VARIANTS[variant].items():
            overrides[f"{stage}.{k}"] = TINY_FILES[variant] if tiny and k == "transformer" else v
        overrides[f"{stage}.compile"] = "on" if compiled else "off"
    if tiny:
        overrides.update(TINY_STEPS)
    recipe = pipeline.build("supir-srpo", overrides)
    return pipeline.run(recipe, image, seed=7, config=Config(comfy_models=(root,)), models=models, device=device,
                        progress=probe.on_progress if probe else None)


def measure(args: argparse.Namespace, root: Path, variant: str, compiled: bool) -> dict:
    dev = torch.device(args.device)
    models = ModelCache(long_lived=True)
    image = pipeline.Image(np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32))
    t0 = time.perf_counter()
    run_once(root, variant, compiled, image, args.device, args.tiny, models, None)  # load, compile, warm up
    cold = time.perf_counter() - t0
    probe = Probe(dev)
    probe.hook(models)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result = run_once(root, variant, compiled, image, args.device, args.tiny, models, probe)
    probe.finish()
    flux = [e.value for e in models.entries() if e.key.startswith(("flux.transformer", "flux.vae"))]
    others = sum(module_bytes(e.value) for e in models.entries()
                 if not e.key.startswith(("flux.transformer", "flux.vae")) and _on(e.value, dev))
    return dict(variant=variant, mode="compiled" if compiled else "eager", cold=cold, stages=result.timings,
                forward=probe.forward, peak=probe.peak, flux_bytes=sum(module_bytes(m) for m in flux),
                stage2=probe.stage2_allocated, others=others, total=sum(result.timings.values()),
                finite=bool(np.isfinite(result.image.rgb).all()))


def _on(value: object, dev: torch.device) -> bool:
    return any(next(iter(m.parameters()), torch.empty(0)).device == dev for m in _modules(value))


def report(r: dict) -> None:
    gib = 2**30
    print(f"\n{r['variant']} / {r['mode']}: total {r['total']:.1f} s (first run incl. loading {r['cold']:.1f} s)"
          + ("" if r["finite"] else "  NON-FINITE OUTPUT"))
    print(f"  {'stage':<14}{'wall s':>9}{'Σ fwd s':>10}{'peak GiB':>10}")
    for stage, wall in r["stages"].items():
        print(f"  {stage:<14}{wall:>9.2f}{r['forward'].get(stage, 0.0):>10.2f}{r['peak'].get(stage, 0) / gib:>10.2f}")
    if r["stage2"] is not None and r["peak"]:
        flux_now = r["stage2"] - r["others"]
        ok = flux_now <= r["flux_bytes"] + 2**30
        print(f"  stage 2 sampling starts with {r['stage2'] / gib:.2f} GiB allocated, {r['others'] / gib:.2f} of it "
              f"other stages' cached models; FLUX {flux_now / gib:.2f} GiB vs transformer + VAE + 1 GiB = "
              f"{(r['flux_bytes'] + 2**30) / gib:.2f}: {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="models folder to write (or reuse with --skip-write)")
    p.add_argument("--skip-write", action="store_true")
    p.add_argument("--variants", default="resident,offload,fp8,gguf")
    p.add_argument("--modes", default="eager,compiled", help="eager, compiled or both")
    p.add_argument("--size", type=int, default=1024, help="input side (the preset doubles it)")
    p.add_argument("--tiny", action="store_true", help="tiny models (checks the script on a CPU, times nothing real)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU host, or use --tiny --device cpu to check the script")
        return 2
    if args.tiny and args.size == 1024:
        args.size = 128
    variants = [v for v in args.variants.split(",") if v]
    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        if not args.skip_write:
            t0 = time.perf_counter()
            if args.tiny:
                from pipeline.models.tiny import make_tiny_models

                make_tiny_models(root)
            else:
                from _full_size import flux_files, supir_files

                flux_files(root, variants=["bf16"] + [v for v, k in (("fp8", "fp8"), ("Q8_0", "gguf")) if k in variants])
                supir_files(root)
            print(f"models written to {root} in {time.perf_counter() - t0:.0f} s")
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"{device}, torch {torch.__version__}, {args.size}² -> {2 * args.size}², supir-srpo preset")
        for variant in variants:
            for mode in modes:
                report(measure(args, root, variant, mode == "compiled"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
