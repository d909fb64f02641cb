"""`dermis doctor`: device, versions, and for every preset whether its weights are found."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
from collections.abc import Sequence
from typing import Any

import pipeline
from pipeline import StageSpec
from pipeline.device import describe, select_device
from pipeline.models import WeightLocator
from pipeline.stages import describe_weights

NAME = "doctor"
HELP = "check the device, versions and which model files are found (--verbose: every place searched)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="check only this preset")


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def print_weight_rows(rows: Sequence[tuple[StageSpec, str, Any, Sequence[str]]], *, verbose: bool) -> None:
    """One line per needed file (found path / MISSING); with --verbose every place searched for it."""
    for spec, weight, path, looked in rows:
        tag = "" if spec.enabled else " (off)"
        tag += " (optional)" if spec.optional else ""
        if path is not None:
            print(f"  {spec.id}{tag}: {weight} -> {path}")
            continue
        print(f"  {spec.id}{tag}: {weight} MISSING" + ("" if verbose or not looked else
                                                         f" ({len(looked)} places searched: --verbose lists them)"))
        if verbose:
            for place in looked:
                print(f"      looked in {place}")


def run(args: argparse.Namespace) -> int:
    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    print(f"dermis {pipeline.__version__}, Python {platform.python_version()}")
    print("packages: " + ", ".join(f"{n} {_version(n)}" for n in
                                   ("torch", "diffusers", "transformers", "spandrel", "grpcio", "protobuf")))
    dev, dtype = select_device(config.device)
    info = describe(dev, dtype)
    mem = f", {info.free_memory / 2**30:.1f}/{info.total_memory / 2**30:.1f} GiB free" if info.total_memory else ""
    print(f"device: {info.name} ({dev}, {str(dtype).removeprefix('torch.')}{mem})")
    print(f"config: {config.path or '(none: defaults)'}")
    print("model folders searched: " + (", ".join(str(r) for r in WeightLocator(config).roots())))
    locator = WeightLocator(config)
    table = pipeline.presets()
    names = [args.preset] if args.preset else sorted(table)
    ready_all = True
    for name in names:
        recipe = pipeline.build(name)
        rows = describe_weights(recipe, locator)
        enabled = {s.id for s in recipe.stages if s.enabled}
        blocking = [r for r in rows if r[2] is None and r[0].id in enabled and not r[0].optional]
        status = "ready" if not blocking else "MISSING WEIGHTS"
        ready_all &= not blocking
        print(f"\npreset {name}: {status}")
        stage_ids = {r[0].id for r in rows}
        for s in recipe.stages:
            if s.id not in stage_ids:
                print(f"  {s.id}: no weights needed{'' if s.enabled else ' (off)'}")
        print_weight_rows(rows, verbose=args.verbose)
    if any(s.kind == "flux_refine" for n in names for s in pipeline.build(n).stages if s.enabled):
        from pipeline.models.flux.report import flux_lines

        print()
        print("\n".join(flux_lines(locator, dev, dtype)))
    return 0 if ready_all or args.preset is None else 1

