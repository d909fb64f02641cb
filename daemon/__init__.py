"""Dermis daemon and command line: gRPC server, job queue, watch folder, CLI entry points.

No image math lives here: everything that touches pixels is in ``pipeline``.
"""
