"""`dermis upscale IN -o OUT`: run a preset on one image, here (or on a daemon with --server)."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import pipeline
from pipeline import images
from pipeline.detail import DEFAULT_SIGMA
from pipeline.errors import InvalidParameter

from ..jobs.recipe import build_recipe
from .progress_bar import ProgressBar

NAME = "upscale"
HELP = "refine and upscale one image"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="image file (PNG, JPEG, TIFF, WebP)")
    p.add_argument("-o", "--output", required=True, help="result file (.png, .tif, .jpg, .webp)")
    p.add_argument("--preset", default=pipeline.DEFAULT_PRESET, help=f"preset name (default {pipeline.DEFAULT_PRESET}; see `dermis presets`)")
    p.add_argument("--scale", type=float, help="output scale (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default: a new one, printed)")
    p.add_argument("--region", help="process only x,y,width,height (pixels)")
    p.add_argument("--mask", help="process only where this greyscale PNG (same size) is white")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: scale=3, grain.strength=0.05, face_restore.enabled=true")
    p.add_argument("--layer", action="store_true",
                   help="write only the processed region with alpha (as an editor layer) instead of the full image")
    p.add_argument("--detail", action="store_true",
                   help="write the detail layer instead of the result: the texture the refinement added, around "
                        "mid-grey, to put over the original in Grain Merge mode (its opacity sets the strength)")
    p.add_argument("--detail-sigma", type=float, default=DEFAULT_SIGMA, metavar="PX",
                   help=f"with --detail: blur radius separating detail from colour, px at the output scale "
                        f"(default {DEFAULT_SIGMA:g})")
    p.add_argument("--compare", metavar="FILE", help="also write a before/after picture")
    p.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--server", metavar="ADDR",
                   help="run the job on a running daemon (`dermis serve`): unix:/path, 127.0.0.1:PORT, or "
                        "'auto' for the one this user started")
    p.add_argument("--priority", choices=("editor", "batch"), default="editor",
                   help="with --server: queue class (editor jobs run first; default editor)")


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    images.format_for_path(dst)  # fail on a bad extension before any work
    if dst.exists() and dst.resolve() == src.resolve():
        raise InvalidParameter("the output would overwrite the input; choose another output file.")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    if getattr(args, "server", None):
        from .remote import upscale_remote

        return upscale_remote(args, seed)
    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    recipe = build_recipe(args.preset, args.overrides, scale=args.scale)
    image = images.load(src, max_pixels=config.max_pixels)
    region = pipeline.Region.parse(args.region) if args.region else None
    mask = images.load_mask(args.mask, max_pixels=config.max_pixels) if args.mask else None
    if recipe.preset == "lite":
        print("dermis: preset 'lite' (CPU, no weights): resample + synthesised skin texture + grain, "
              "not diffusion", file=sys.stderr)
    with ProgressBar(enabled=not args.quiet, label=recipe.label) as bar:
        result = pipeline.run(recipe, image, seed=seed, region=region, mask=mask,
                              output="layer" if args.layer else "full", progress=bar.update,
                              content="detail" if args.detail else "normal", detail_sigma=args.detail_sigma,
                              config=config, device=args.device)
    images.save(result.image, dst)
    what = "the detail layer (Grain Merge it over the original) " if args.detail else ""
    print(f"dermis: wrote {what}{dst} ({result.image.width}x{result.image.height}, preset {recipe.preset}, "
          f"seed {seed})")
    if args.layer:
        print(f"dermis: layer offset {result.offset[0]},{result.offset[1]} in a "
              f"{result.canvas_size[0]}x{result.canvas_size[1]} canvas")
    if args.compare:
        from pipeline.compare import side_by_side

        pic = side_by_side(image, result.image, labels=("plain Lanczos", f"Dermis {recipe.label}"))
        images.save(pic, args.compare, bit_depth=8)
        print(f"dermis: wrote before/after comparison {args.compare}")
    for m in result.messages:
        print(f"dermis: note: {m}", file=sys.stderr)
    return 0
