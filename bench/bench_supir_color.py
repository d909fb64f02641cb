"""Benchmark: how far each SUPIR colour correction moves colour and contrast, in CIE Lab.

    .venv/bin/python bench/bench_supir_color.py [--size 256] [--steps 45]

For three inputs (the bundled portrait and two synthetic ones made here: warm skin with pores, and a
saturated colour chart), runs the `supir` preset's Stage 1 through ``pipeline.run`` on the tiny random-weight
models with the colour fix off, then applies each fix exactly as the stage does (against the stage-1 image
x_stage1 at working size) and prints, per channel L, a, b: the shift of the mean and the ratio of the
standard deviations, of the result against the (upscaled) input and against x_stage1.

Random weights say nothing about what real SUPIR does to colour: the tiny model's sample and even its
stage-1 image are far from the input. What the numbers do show is what each fix guarantees by
construction: how closely it ties the result's colour and tone to its reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline import colorfix, images  # noqa: E402
from pipeline.models.supir.pipeline import Settings, decode, encode_lq, load_models  # noqa: E402
from pipeline.models.tiny import make_tiny_models  # noqa: E402


def skin(size: int) -> np.ndarray:
    """Warm skin tones with a soft highlight and pore-scale texture."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.80 + 0.10 * x, 0.58 + 0.08 * y, 0.46 + 0.05 * x * y], -1)
    glow = 0.15 * np.exp(-((x - 0.6) ** 2 + (y - 0.35) ** 2) / 0.02)[..., None]
    pores = cv2.GaussianBlur(rng.normal(0, 0.05, (size, size)).astype(np.float32), (0, 0), 0.8)[..., None]
    return np.clip(base + glow + pores, 0, 1).astype(np.float32)


def chart(size: int) -> np.ndarray:
    """A 4 x 6 chart of saturated and neutral patches with sharp edges."""
    rng = np.random.default_rng(11)
    patches = rng.random((4, 6, 3)).astype(np.float32)
    patches[3] = np.linspace(0.05, 0.95, 6)[:, None]  # a grey ramp
    return cv2.resize(patches, (size, size), interpolation=cv2.INTER_NEAREST)


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB).reshape(-1, 3)


def compare(out: np.ndarray, ref: np.ndarray) -> str:
    o, r = lab(out), lab(ref)
    shift = np.abs(o.mean(0) - r.mean(0))
    ratio = o.std(0) / np.maximum(r.std(0), 1e-6)
    return "  ".join(f"{c} {s:5.1f} x{q:4.2f}" for c, s, q in zip("Lab", shift, ratio, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="output side (also SUPIR's min_size)")
    ap.add_argument("--steps", type=int, default=45)
    args = ap.parse_args()
    torch.set_num_threads(2)
    n = args.size
    portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png").rgb
    inputs = {"portrait": cv2.resize(portrait, (n // 2, n // 2), interpolation=cv2.INTER_AREA),
              "skin": skin(n // 2), "chart": chart(n // 2)}
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp) / "models"
        paths = make_tiny_models(models_dir, ["spandrel", "supir"])
        config = pipeline.load_config(comfy_models=[models_dir])
        m = load_models(paths["sdxl"], paths["supir_v0q"], torch.float32, torch.float32)
        overrides = {"skin_detail.enabled": "false", "grain.enabled": "false", "supir.min_size": str(n),
                     "supir.steps": str(args.steps), "supir.color_fix": "none"}
        recipe = pipeline.build("supir", overrides, scale=2.0)
        print(f"# SUPIR colour fixes in Lab on the tiny random-weight models, {n}² output, {args.steps} steps")
        print("# per channel: |mean shift| (Lab units) and std ratio, of the result against a reference")
        for name, rgb in inputs.items():
            result = pipeline.run(recipe, images.from_array((rgb * 255).round().astype(np.uint8)), seed=1,
                                  config=config, device="cpu")
            up = images.resize_rgb(rgb, (n, n))  # what SUPIR starts from: the input at working size
            lq = images.to_tensor(up) * 2 - 1
            with torch.inference_mode():
                x_stage1 = decode(m, encode_lq(m, lq, Settings()), Settings()).clamp(-1, 1)
            sample = images.to_tensor(result.image.rgb) * 2 - 1
            stage1 = images.from_tensor((x_stage1 + 1) / 2)
            for fix in ("none", "wavelet", "adain"):
                fixed = sample if fix == "none" else getattr(colorfix, fix)(sample, x_stage1)
                out = images.from_tensor((fixed.clamp(-1, 1) + 1) / 2)
                print(f"{name:<9}{fix:<8} vs input: {compare(out, up)}   vs stage-1: {compare(out, stage1)}")


if __name__ == "__main__":
    main()
