"""`dermis presets`: what presets exist and which stages they run."""

from __future__ import annotations

import argparse

import pipeline

NAME = "presets"
HELP = "list presets and their stages"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name, r in sorted(pipeline.presets().items()):
        default = " (default)" if name == pipeline.DEFAULT_PRESET else ""
        print(f"{name}{default}: scale {r.scale:g}")
        if r.description:
            print(f"  {r.description}")
        for s in r.stages:
            state = "on" if s.enabled else "off"
            extra = ", optional" if s.optional else ""
            params = ", ".join(f"{k}={v}" for k, v in s.params.items())
            print(f"  - {s.id} [{s.kind}] ({state}{extra}){': ' + params if params else ''}")
    return 0
