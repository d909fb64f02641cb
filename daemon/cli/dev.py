"""`dermis dev …`: developer tools (tiny random-weight models for tests and demos)."""

from __future__ import annotations

import argparse

from pipeline import InvalidParameter

NAME = "dev"
HELP = "developer tools"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dev_command", required=True, metavar="TOOL")
    t = sub.add_parser("make-tiny-models", help="write random-weight models in the real file formats, "
                       "laid out like a ComfyUI models/ folder")
    t.add_argument("dir", help="output folder (use it with --comfy-models DIR)")
    t.add_argument("--family", action="append", help="only these model families (repeatable)")


def run(args: argparse.Namespace) -> int:
    if args.dev_command == "make-tiny-models":
        from pipeline.models.tiny import FAMILIES, make_tiny_models

        families = args.family or list(FAMILIES)
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise InvalidParameter(f"unknown family {', '.join(sorted(unknown))}; known: {', '.join(FAMILIES)}.")
        written = make_tiny_models(args.dir, families)
        for name, path in sorted(written.items()):
            print(f"{name}: {path}")
        print(f"random weights, for tests only; use with --comfy-models {args.dir}")
    return 0
