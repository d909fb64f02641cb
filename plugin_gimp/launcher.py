#!/usr/bin/env python3
"""GIMP 3 entry point of the Dermis plug-in.

``dermis install-plugin gimp`` copies this file to ``plug-ins/dermis/dermis.py`` (GIMP 3 only runs a
plug-in that sits in a folder of the same name, and only if it is executable), next to the
``plugin_gimp`` package and a ``vendor/`` folder holding grpcio + protobuf built for GIMP's Python.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join(HERE, "vendor")
# vendor first: its protobuf must win over an older one in GIMP's or the system's site-packages,
# or the generated code refuses to load
sys.path[:0] = [HERE] + ([VENDOR] if os.path.isdir(VENDOR) else [])

from plugin_gimp.procedure import main  # noqa: E402

main()
