"""Where the plugin finds Dermis's thin client (``proto/client.py``) and the logic it shares with the
GIMP plug-in (``proto/editors.py``: progress text, hints, defaults; ``proto/islands.py``: selection
islands and faces -> jobs).

Installed, ``dermis install-plugin krita`` vendors ``proto/`` (client + generated code) inside the
plugin package, so it is imported relatively and works whatever the plugin's top-level name is.
Run from the repository (unit tests), the package has no ``proto/`` inside and the repository's
own ``proto`` package is used. Plugins never import the generated ``_pb2`` modules themselves.
"""

from __future__ import annotations

import importlib
import importlib.util

_package = __name__.rpartition(".")[0]
_root = f"{_package}.proto" if importlib.util.find_spec(f"{_package}.proto") is not None else "proto"
client = importlib.import_module(f"{_root}.client")
editors = importlib.import_module(f"{_root}.editors")
islands = importlib.import_module(f"{_root}.islands")

__all__ = ["client", "editors", "islands"]
