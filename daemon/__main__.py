"""`python -m daemon` = `dermis` (for environments without the console script)."""

from .cli.entry import entrypoint

entrypoint()
