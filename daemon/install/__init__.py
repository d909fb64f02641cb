"""`dermis install-plugin`: ``krita.py`` and ``gimp.py`` copy a plugin and the thin client (``proto/``)
into the editor's folder, ``vendor.py`` unpacks grpcio + protobuf wheels for the editor's Python.
Every failure is one ``daemon.errors.InstallError``.
"""
