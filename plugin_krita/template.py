"""A tiny .kra file Dermis writes and opens (no view) to get what Krita 5.1's scripting API cannot make.

1. A transparency mask that has pixels. ``createNode(..., "transparencymask")`` gives a mask without a
   selection (``pixelData`` returns 0 bytes, ``setPixelData`` is ignored, saving crashes Krita), but
   Krita's .kra loader gives every mask it loads a selection (``initSelectionForMask``, then the
   mask's pixel data). The template holds a group with one transparency mask; ``mask()`` duplicates
   it, and the copy takes ``setPixelData``. A pixel selection is always 1 byte per pixel (Krita's
   Alpha8), whatever the document's depth, so the template needs no colour space: the host is a group
   (a paint layer would need its own ICC profile in the file, or Krita shows a warning dialog).
2. A blending mode set without an undo step in the user's image. ``Node.setBlendingMode`` runs an undo
   command on the image of the ``Node`` object it is called on; a node reached through the template's
   own tree records it in the template's history, which closes with it.

Call on Krita's UI thread.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any

from krita import Krita

from .document import DocumentError

_HOST, _MASK = "host", "mask"
# Krita's tiled format with no tiles: the whole mask is its default pixel (0: nothing selected)
_EMPTY_SELECTION = b"VERSION 2\nTILEWIDTH 64\nTILEHEIGHT 64\nPIXELSIZE 1\nDATA 0\n"
_MAINDOC = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE DOC PUBLIC '-//KDE//DTD krita 2.0//EN' 'http://www.calligra.org/DTD/krita-2.0.dtd'>
<DOC xmlns="http://www.calligra.org/DTD/krita" editor="Krita" kritaVersion="5.1.5" syntaxVersion="2.0">
 <IMAGE name="dermis" description="" mime="application/x-kra" colorspacename="RGBA"
        profile="sRGB-elle-V2-srgbtrc.icc" width="64" height="64" x-res="72" y-res="72">
  <layers>
   <layer name="{_HOST}" nodetype="grouplayer" filename="layer1" uuid="{{6c0e9f7e-4d5e-4c7a-9a51-0d2f4a0c0001}}"
          compositeop="normal" opacity="255" visible="1" locked="0" collapsed="0" passthrough="0"
          x="0" y="0" intimeline="0" colorlabel="0" channelflags="">
    <masks>
     <mask name="{_MASK}" nodetype="transparencymask" filename="mask1" uuid="{{6c0e9f7e-4d5e-4c7a-9a51-0d2f4a0c0002}}"
           visible="1" locked="0" active="0" x="0" y="0" intimeline="0" colorlabel="0"/>
    </masks>
   </layer>
  </layers>
 </IMAGE>
</DOC>
"""


def write(path: str) -> None:
    """The template at ``path`` (the mimetype entry first and stored, as Krita's files have it)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), b"application/x-krita", compress_type=zipfile.ZIP_STORED)
        z.writestr("maindoc.xml", _MAINDOC, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("dermis/layers/mask1.pixelselection", _EMPTY_SELECTION)
        z.writestr("dermis/layers/mask1.pixelselection.defaultpixel", b"\x00")


class TemplateError(DocumentError):
    pass


class Template:
    """The template, opened as a document without a view the first time it is needed; ``close()``
    (or leaving ``with``) closes and deletes it."""

    def __init__(self) -> None:
        self._doc: Any = None
        self._path = ""
        self._mask: Any = None

    def _open(self) -> None:
        if self._doc is not None:
            return
        fd, self._path = tempfile.mkstemp(prefix="dermis-", suffix=".kra")  # one per use: no races
        os.close(fd)
        write(self._path)
        self._doc = Krita.instance().openDocument(self._path)
        if self._doc is None:
            self._remove()
            raise TemplateError("Krita could not open Dermis's mask template; the result was not inserted.")
        host = self._doc.rootNode().childNodes()[0]
        self._mask = next((c for c in host.childNodes() if c.type() == "transparencymask"), None)
        if self._mask is None:
            self.close()
            raise TemplateError("Krita loaded Dermis's mask template without its mask; the result was not inserted.")

    def mask(self, name: str) -> Any:
        """A new, detached transparency mask with a selection (all 0) that ``setPixelData`` fills."""
        self._open()
        node = self._mask.duplicate()
        node.setName(name)
        return node

    def set_blending_mode(self, node: Any, mode: str) -> None:
        """``node`` (detached) in ``mode``, the undo step going to the template's history."""
        self._open()
        holder = self._doc.createGroupLayer("holder")  # never added to the template's image
        holder.setChildNodes([node])
        holder.childNodes()[0].setBlendingMode(mode)  # this Node object belongs to the template
        holder.setChildNodes([])

    def close(self) -> None:
        if self._doc is not None:
            self._doc.setModified(False)
            self._doc.close()
            self._doc = None
        self._remove()

    def _remove(self) -> None:
        if not self._path:
            return
        try:
            os.remove(self._path)
        except OSError:
            pass

    def __enter__(self) -> Template:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
