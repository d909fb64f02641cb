"""Where the plugin finds Dermis's thin client (``proto/client.py``).

Installed, ``dermis install-plugin krita`` vendors ``proto/`` (client + generated code) inside the
plugin package, so it is imported relatively and works whatever the plugin's top-level name is.
Run from the repository (unit tests), the package has no ``proto/`` inside and the repository's
own ``proto`` package is used. Plugins never import the generated ``_pb2`` modules themselves.
"""

from __future__ import annotations

import importlib
import importlib.util

_package = __name__.rpartition(".")[0]
if importlib.util.find_spec(f"{_package}.proto") is not None:
    client = importlib.import_module(f"{_package}.proto.client")
else:
    client = importlib.import_module("proto.client")

__all__ = ["client"]
