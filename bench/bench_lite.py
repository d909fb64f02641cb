"""Benchmark: the lite preset and the spandrel stage.

    .venv/bin/python bench/bench_lite.py [--repeat 5]

Prints the median wall time of the lite preset for 512->1024 and 1024->2048 (the example portrait,
resized for the larger case), and the spandrel stage's time per megapixel with a full-size random-weight
1x ESRGAN 32nf/12nb (the SkinDiffDetail shape) on this machine's device (CUDA when present).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline import images  # noqa: E402
from pipeline.device import select_device  # noqa: E402
from pipeline.models.upscale.tiny import esrgan_state_dict  # noqa: E402
from pipeline.recipes import StageSpec  # noqa: E402


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up (imports, allocator, model load)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    dev, dtype = select_device()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), torch {torch.__version__}")
    portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png")
    big = images.resize(portrait, (1024, 1024))
    lite = pipeline.build("lite", scale=2.0)
    for name, img in (("512->1024", portrait), ("1024->2048", big)):
        t = median_time(lambda img=img: pipeline.run(lite, img, seed=1), args.repeat)
        print(f"lite {name}: median {t:.3f} s over {args.repeat} runs")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
        torch.save(esrgan_state_dict(num_filters=32, num_blocks=12, scale=1), path)
        side = 1024 if dev.type == "cuda" else 256
        img = images.resize(portrait, (side, side))
        recipe = replace(lite, scale=1.0, stages=(StageSpec("skin_detail", "upscale_model", params={"model": str(path)}),))
        models = pipeline.ModelCache()
        t = median_time(lambda: pipeline.run(recipe, img, seed=1, models=models), max(1, args.repeat // 2))
        mp = side * side / 1e6
        print(f"spandrel ESRGAN 32nf/12nb 1x, {side}x{side} ({dtype}): median {t:.3f} s = {t / mp:.2f} s/MP")


if __name__ == "__main__":
    main()
