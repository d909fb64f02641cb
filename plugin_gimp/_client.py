"""Where the thin client (and the override parser every client shares) comes from.

Installed, the plug-in carries its own copy of ``proto/`` inside this package (``dermis install-plugin
gimp`` puts it at ``plugin_gimp/proto/``), so the relative import finds it whatever else GIMP's Python
has on its path. From a source checkout the top-level ``proto`` package is the same code.
The client imports grpc lazily: a missing grpcio shows up as ``DependencyMissing`` when a connection
is made, not here, so the plug-in always registers and can explain what is missing.
"""

from __future__ import annotations

import importlib.util

# Decide by presence, not by catching ImportError: an installed copy that fails to import (say a
# protobuf too old for the generated code) must report that error, not fall back to a module the
# installed plug-in does not have.
if importlib.util.find_spec(f"{__package__}.proto") is not None:
    from .proto import client, editors, islands, overrides
else:  # running from the source tree (unit tests, development)
    from proto import client, editors, islands, overrides  # type: ignore[no-redef]

__all__ = ["client", "editors", "islands", "overrides"]
