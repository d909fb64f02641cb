"""Dermis daemon and command line, by role.

- ``cli/``: the ``dermis`` entry point and one module per command; it only parses and dispatches.
- ``server/``: the gRPC daemon: start-up, the servicer, proto conversion, uploads, token, runtime file.
- ``jobs/``: the job queue, the executor thread that owns the device, model residency.
- ``watch/``: hot folders (standalone with ``dermis watch`` or inside the daemon).
- ``install/``: the Krita and GIMP plugin installers and the grpcio/protobuf vendoring.
- ``errors.py``: the errors of the daemon's own making (their codes are ``pipeline.errors.ErrorCode``).

Imports point one way: ``cli -> server -> jobs -> pipeline`` and ``watch -> jobs``; ``jobs`` imports
neither ``server`` nor ``cli`` (tests/test_layering.py checks it). No image math lives here: everything
that touches pixels is in ``pipeline``.
"""
