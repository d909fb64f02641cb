"""Faces: find them (RetinaFace), align them to the FFHQ template, paste restored ones back.

The networks live in ``pipeline.models`` (``models/faces``: ``retinaface``, ``restorers``); this package holds the
image math around them, so it can be tested with recorded landmarks and without any weights.
"""

from .align import FFHQ_TEMPLATE_512, Alignment, align, paste_face, paste_mask, warp_face
from .detect import Face, detect_faces

__all__ = [
    "FFHQ_TEMPLATE_512",
    "Alignment",
    "Face",
    "align",
    "detect_faces",
    "paste_face",
    "paste_mask",
    "warp_face",
]
