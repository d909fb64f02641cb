"""`dermis install-plugin krita|gimp`: copy a plugin and the thin client into the editor's folder.

The editor-specific work lives in ``daemon/install/<editor>.py`` (``install(args) -> int`` and
``uninstall(args) -> int``); wheels of grpcio + protobuf matching the editor's Python are vendored
by ``daemon/install/vendor.py``.
"""

from __future__ import annotations

import argparse
import importlib

NAME = "install-plugin"
HELP = "install the Krita or GIMP 3 plugin (with the thin client and its grpcio/protobuf wheels)"
EDITORS = ("krita", "gimp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("editor", choices=EDITORS)
    p.add_argument("--target", metavar="DIR", help="the editor's plugin folder (default: its usual user folder)")
    p.add_argument("--uninstall", action="store_true", help="remove what a previous install put there")
    p.add_argument("--python-version", metavar="X.Y",
                   help="the editor's Python version for the vendored wheels (default: detected or this Python)")
    p.add_argument("--platform", metavar="TAG", action="append",
                   help="wheel platform tag(s) for the editor's machine (default: this machine's)")
    p.add_argument("--no-vendor", action="store_true",
                   help="do not vendor grpcio/protobuf (the editor's Python already has them)")
    p.add_argument("--wheels", metavar="DIR", help="take the wheels from this folder instead of PyPI")
    p.add_argument("--enable", action="store_true", help="also enable the plugin in the editor's settings (Krita)")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"daemon.install.{args.editor}")
    return int(module.uninstall(args) if args.uninstall else module.install(args))
