"""Test-only Krita plugin: drives the installed Dermis plugin like a user would, then quits.

Enabled only in the throw-away Krita profile of tests/test_krita_editor.py, and only acts when
DERMIS_AUTOTEST_SPEC names its instructions. See driver.py.
"""

import os

if os.environ.get("DERMIS_AUTOTEST_SPEC"):
    from krita import Extension, Krita

    class _AutoTest(Extension):
        def setup(self) -> None:
            from . import driver

            driver.install()

        def createActions(self, window) -> None:
            pass

    Krita.instance().addExtension(_AutoTest(Krita.instance()))
