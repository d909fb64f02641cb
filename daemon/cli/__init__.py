"""The ``dermis`` command line: ``entry.py`` parses and dispatches, and each command is one module here
(``upscale``, ``presets``, ``doctor``, ``dev``, ``install_plugin``, ``serve``, ``status``, ``watch``)
with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Commands call into
``server``, ``jobs``, ``watch``, ``install`` and ``pipeline``; nothing imports this package back.
"""

from .entry import entrypoint, main, main_parser

__all__ = ["entrypoint", "main", "main_parser"]
