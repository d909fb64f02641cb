"""Benchmark: the SUPIR stage end to end on the tiny random-weight models, on the CPU.

    .venv/bin/python bench/bench_supir_cpu.py [--size 512] [--repeat 3] [--set supir.sampler=edm ...]

Runs the `supir` preset (SkinDiffDetail off) through ``pipeline.run`` on the bundled portrait, resized to
``--size``² (SUPIR's short side is set to the same size, so no enlargement), with the preset's own
sampler settings unless ``--set`` changes them, and prints the median wall time of ``--repeat`` runs after
one warm-up (which loads the models), with the sum of the SUPIR denoiser's forward times in the same runs
and the rest (VAE, text, sampler loop, colour fix, resizing: the pipeline's own overhead). Uses only the
public API and ``pipeline.models.supir.denoiser.denoise``, so the same file measures an older checkout too
(copy it there and run it with that checkout on ``sys.path``). Tiny models say nothing about image quality
or GPU speed; on a shared machine the forward times swing with the load, the overhead much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline import images  # noqa: E402
from pipeline.models.supir import denoiser  # noqa: E402
from pipeline.models.tiny import make_tiny_models  # noqa: E402

FORWARD: list[float] = []


def _timed(fn):
    def wrapper(*args, **kw):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        FORWARD.append(time.perf_counter() - t0)
        return out
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="output side in px (also SUPIR's min_size)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        make_tiny_models(models, ["spandrel", "supir"])
        config = pipeline.load_config(comfy_models=[models])
        portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png")
        src = portrait if args.size == 512 else images.resize(portrait, (args.size // 2, args.size // 2))
        scale = args.size / src.width
        overrides = {"skin_detail.enabled": "false", "supir.min_size": str(args.size)}
        overrides.update(dict(kv.split("=", 1) for kv in args.overrides))
        recipe = pipeline.build("supir", overrides, scale=scale)
        cache = pipeline.ModelCache()

        denoiser.denoise = _timed(denoiser.denoise)

        def once() -> tuple[float, float]:
            FORWARD.clear()
            t0 = time.perf_counter()
            pipeline.run(recipe, src, seed=1, config=config, models=cache, device="cpu")
            return time.perf_counter() - t0, sum(FORWARD)

        once()  # warm-up: loads the models into the cache
        runs = [once() for _ in range(args.repeat)]
    times = [w for w, _ in runs]
    rest = [w - f for w, f in runs]
    supir = recipe.stage("supir").params
    print(f"# SUPIR tiny pipeline on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{src.width}->{args.size}px, overrides {supir}: median {statistics.median(times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times)}); outside the denoiser: median "
          f"{statistics.median(rest):.2f} s (runs {', '.join(f'{t:.2f}' for t in rest)}), "
          f"{len(FORWARD)} denoiser calls per run")


if __name__ == "__main__":
    main()
