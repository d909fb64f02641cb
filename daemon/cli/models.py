"""`dermis models [PRESET|ROLE…]` and `dermis models get [PRESET|ROLE…]`: see and fetch the weight files.

`dermis models` prints one row per weights key the presets need (found where / missing, size, licence)
and one line saying how to get what is missing. `dermis models get` downloads the missing files from
the weight catalogue (pipeline/models/catalogue.toml) into a ComfyUI-layout models folder; the
download itself is ``pipeline.fetch`` (the terminal questions and the progress bar are here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pipeline
from pipeline import InvalidParameter, fetch
from pipeline.fetch import RoleStatus
from pipeline.models import WeightLocator
from pipeline.models.catalogue import human_bytes

NAME = "models"
HELP = "list the model files presets need (found / missing), or `models get` to download them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="*", metavar="[get] PRESET|ROLE",
                   help="presets or weights names to show (default: every preset); `get ...` downloads "
                        f"what they lack (default: {pipeline.DEFAULT_PRESET})")
    p.add_argument("--into", metavar="DIR",
                   help="get: a models folder (ComfyUI layout) to download into (default: the first "
                        "--comfy-models / comfy_models folder, else Dermis's own models folder)")
    p.add_argument("--variant", metavar="NAME",
                   help="get: a file variant, e.g. fp8, gguf-q8, bf16 (`dermis models` lists them)")
    p.add_argument("-y", "--yes", action="store_true",
                   help="get: accept the licences shown and download more than 10 GB without asking")


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    locator = WeightLocator(config)
    if words[:1] == ["get"]:
        from .models_get import get

        return get(args, config, locator, words[1:] or [pipeline.DEFAULT_PRESET])
    for option in ("into", "variant"):
        if getattr(args, option):
            raise InvalidParameter(f"--{option} is an option of `dermis models get`.")
    rows = fetch.status(words, locator, args.variant)
    print_table(rows)
    print(missing_line(rows, words))
    return 0


def print_table(rows: list[RoleStatus]) -> None:
    """ROLE | found PATH / missing FILE | SIZE | LICENCE, one row per weights key."""
    table = [("ROLE", "STATUS", "SIZE", "LICENCE")]
    for r in rows:
        mark = "" if r.enabled else " (off)"
        mark += " (optional)" if r.enabled and not r.required else ""
        e = r.entry
        if r.found is not None:
            where = f"found {r.found}"
            size = human_bytes(r.found.stat().st_size) if r.found.is_file() else "folder"
        else:
            where = f"missing: {e.relpath}" if e is not None and e.source != "package" else "missing"
            size = e.size_text() if e is not None else "?"
        licence = "" if e is None else e.licence.split(" (")[0] + (" [non-commercial]" if e.non_commercial else "")
        table.append((r.role + mark, where, size, licence))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])


def missing_line(rows: list[RoleStatus], words: list[str]) -> str:
    """The one line under the table: how to get what is missing."""
    lacking = [r for r in rows if r.missing and r.enabled]
    if not lacking:
        return "Nothing is missing." if rows else "No weights are needed."
    target = " ".join(words) if words else "PRESET"
    fetchable = [r for r in lacking if r.entry is not None and r.entry.downloadable]
    size = human_bytes(sum(r.entry.size_hint or 0 for r in fetchable if r.entry is not None))
    text = f"{len(lacking)} missing: `dermis models get {target}` downloads {len(fetchable)} of them ({size})"
    by_hand = len(lacking) - len(fetchable)
    text += f" and says where to get the other {by_hand}." if by_hand else "."
    return text + " `dermis doctor --verbose` lists every place searched."


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on the terminal; ``--yes`` answers yes, a non-interactive stdin no."""
    if assume_yes:
        print(f"{question} yes (--yes)")
        return True
    if not sys.stdin.isatty():
        print(f"{question} no (not a terminal; pass --yes to answer yes)")
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def destination(args: argparse.Namespace, config: pipeline.Config) -> Path:
    """Where `models get` downloads to: --into, else the first ComfyUI models folder, else Dermis's own."""
    if args.into:
        return Path(args.into).expanduser().resolve()
    return fetch.download_root(config)
