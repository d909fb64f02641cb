"""`dermis` command line: parses and dispatches, nothing else.

Each sub-command is a module ``daemon/cli/<name>.py`` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; add new ones to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from pipeline import DermisError
from pipeline.errors import ErrorCode, Fix
from proto.client_types import ClientError

COMMANDS = [
    "daemon.cli.upscale",
    "daemon.cli.presets",
    "daemon.cli.doctor",
    "daemon.cli.models",
    "daemon.cli.dev",
    "daemon.cli.install_plugin",
    "daemon.cli.serve",
    "daemon.cli.status",
    "daemon.cli.watch",
]


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command takes (where the config and the user's models are)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", help="config file (default: $DERMIS_CONFIG or the user config folder)")
    p.add_argument("--comfy-models", metavar="DIR", action="append", default=[],
                   help="a ComfyUI models/ folder to take weights from (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return p


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermis",
        description="Realistic-skin upscaling for AI portraits (SUPIR + Flux SRPO, or the CPU 'lite' preset).",
    )
    from pipeline import __version__

    parser.add_argument("--version", action="version", version=f"dermis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_options()
    for name in COMMANDS:
        mod = importlib.import_module(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP, parents=[parent])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except (DermisError, ClientError) as e:
        return report_error(e)
    except KeyboardInterrupt:
        print("dermis: interrupted", file=sys.stderr)
        return 130


def report_error(err: DermisError | ClientError) -> int:
    """The one way the CLI reports a failure: ``dermis: error: <sentence>`` on stderr, and the exit
    status its code calls for: 2 when the command's options must change (a usage error), 1 otherwise
    (another input, the set-up, a limit or a bug: the command was right but could not be done)."""
    print(f"dermis: error: {err}", file=sys.stderr)
    hint = cli_hint(err)
    if hint:
        print(f"dermis: hint: {hint}", file=sys.stderr)
    return exit_status(ErrorCode.of(err.code))


def cli_hint(err: DermisError | ClientError) -> str:
    """What a terminal user can do about an error, in commands (the library's messages name none:
    editor users see them too)."""
    code = ErrorCode.of(err.code)
    if code is ErrorCode.MISSING_WEIGHTS:
        preset = getattr(err, "preset", "") or _preset_in(str(err))
        target = preset or " ".join(str(getattr(err, "key", "ROLE")).split(","))
        return (f"`dermis models get {target}` downloads what it can and says where to get the rest "
                "(`--preset lite` needs no weights); `dermis doctor --verbose` lists every place searched.")
    if code is ErrorCode.LICENCE_NOT_ACCEPTED:
        return "run the command in a terminal and answer yes, or pass --yes to accept the licences shown."
    if code in (ErrorCode.NETWORK_UNAVAILABLE, ErrorCode.DOWNLOAD_FAILED, ErrorCode.CHECKSUM_MISMATCH):
        return "run `dermis models get` again: it resumes where the download stopped."
    return ""


def _preset_in(message: str) -> str:
    """The preset a daemon's missing-weights message names ("Missing weights: preset 'x' cannot run…")."""
    match = re.match(r"Missing weights: preset '([^']+)'", message)
    return match.group(1) if match else ""


def exit_status(code: ErrorCode) -> int:
    return 2 if code.fix is Fix.REQUEST else 1


def entrypoint() -> None:
    sys.exit(main(sys.argv[1:]))
