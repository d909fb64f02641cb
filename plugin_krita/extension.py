"""Registers Dermis with Krita: two actions under Tools → Scripts → Dermis, and the docker.

The actions only hand over to the shared controller; everything they start runs without blocking
Krita (see ``controller`` and ``jobs``).
"""

from __future__ import annotations

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita
from PyQt5.QtWidgets import QMenu

from . import controller
from .docker import DermisDocker

ACTIONS = (
    # id, menu text, whole_image
    ("dermis_refine", "Refine skin", False),
    ("dermis_refine_whole", "Refine skin (whole image)", True),
)
MENU_NAME = "dermis_menu"


class DermisExtension(Extension):
    def setup(self) -> None:
        notifier = Krita.instance().notifier()
        notifier.setActive(True)  # Krita only emits applicationClosing to active notifiers
        notifier.applicationClosing.connect(controller.shutdown)
        # an image opened again may be one a run was working on when Krita closed (resume.py)
        notifier.imageCreated.connect(lambda _doc: controller.instance().resume_pending())

    def createActions(self, window) -> None:
        # The submenu is itself an action Krita creates, so Krita's menu location lookup finds it
        # ("tools/scripts/dermis_menu") and keeps it when the menus are rebuilt.
        menu_action = window.createAction(MENU_NAME, "Dermis", "tools/scripts")
        menu_action.setMenu(QMenu("Dermis", window.qwindow()))
        for action_id, text, whole in ACTIONS:
            action = window.createAction(action_id, text, f"tools/scripts/{MENU_NAME}")
            action.setToolTip("Dermis: " + ("the merged image → a new layer on top" if whole
                                            else "the selection, or the active layer → a new layer above it"))
            action.triggered.connect(lambda _checked=False, w=whole: controller.instance().refine(whole_image=w))


Krita.instance().addExtension(DermisExtension(Krita.instance()))
Krita.instance().addDockWidgetFactory(
    DockWidgetFactory("dermis_docker", DockWidgetFactoryBase.DockRight, DermisDocker))
