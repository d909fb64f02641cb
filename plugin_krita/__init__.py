"""Dermis for Krita: refine skin in the selection or the active layer through the Dermis daemon.

Installed by ``dermis install-plugin krita`` as the package ``dermis_krita`` in Krita's pykrita
folder, with the thin client vendored in ``proto/`` and grpcio + protobuf for Krita's Python in
``vendor/``. Importing this package never fails because of a missing dependency: grpc is imported
only when the plugin first talks to the daemon, and a missing grpcio becomes a message in the docker.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    # first, so the protobuf runtime matches the vendored generated code
    sys.path.insert(0, _VENDOR)

try:
    import krita as _krita
except ImportError:  # imported outside Krita (unit tests, install tooling)
    _krita = None

if _krita is not None and not getattr(_krita, "IS_MOCK", False):
    from . import extension  # noqa: F401  (registers the actions and the docker)
