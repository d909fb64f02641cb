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
        pass

    def createActions(self, window) -> None:
        menu = _dermis_menu(window)
        for action_id, text, whole in ACTIONS:
            # no menu location here: Krita's lookup only knows its own menus, so we add it to ours
            action = window.createAction(action_id, text, "")
            action.setToolTip("Dermis: " + ("the merged image → a new layer on top" if whole
                                            else "the selection, or the active layer → a new layer above it"))
            action.triggered.connect(lambda _checked=False, w=whole: controller.instance().refine(whole_image=w))
            if menu is not None:
                menu.addAction(action)


def _dermis_menu(window) -> QMenu | None:
    """Tools → Scripts → Dermis (created once per window)."""
    bar = window.qwindow().menuBar()
    tools = _submenu(bar.actions(), "tools")
    scripts = _submenu(tools.actions(), "scripts") if tools is not None else None
    parent = scripts or tools
    if parent is None:
        return None
    existing = _submenu(parent.actions(), MENU_NAME)
    if existing is not None:
        return existing
    menu = QMenu("Dermis", parent)
    menu.menuAction().setObjectName(MENU_NAME)
    parent.addMenu(menu)
    return menu


def _submenu(actions, name: str) -> QMenu | None:
    for a in actions:
        if a.objectName().lower() == name and a.menu() is not None:
            return a.menu()
    return None


Krita.instance().addExtension(DermisExtension(Krita.instance()))
Krita.instance().addDockWidgetFactory(
    DockWidgetFactory("dermis_docker", DockWidgetFactoryBase.DockRight, DermisDocker))
