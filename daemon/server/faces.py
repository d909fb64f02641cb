"""FindFaces: face boxes in a small picture an editor sends, for one job per face.

The detection is the pipeline's weight-free one (``pipeline.skin.faces_with_skin``: OpenCV's
frontal-face cascade, keeping boxes that hold skin): quick on the CPU and on the calling thread, so it
never waits behind the device's queue. The picture is small by contract (an editor shrinks its selection to a few megapixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import InvalidParameter, images
from pipeline.skin import faces_with_skin
from proto.dermis.v1 import dermis_pb2 as pb

MAX_PIXELS = 4 << 20


def find_faces(request: Any) -> Any:
    f = request.image
    w, h, c = int(f.width), int(f.height), int(f.channels)
    if f.bit_depth not in (0, 8) or c not in (3, 4) or w <= 0 or h <= 0:
        raise InvalidParameter(f"FindFaces takes 8-bit RGB or RGBA pixels, not {w}x{h}x{c} at {f.bit_depth} bits.")
    if w * h > MAX_PIXELS:
        raise InvalidParameter(f"the picture for FindFaces is {w}x{h}; shrink it to at most {MAX_PIXELS:,} pixels.")
    if len(request.pixels) != w * h * c:
        raise InvalidParameter(f"{w}x{h}x{c} needs {w * h * c:,} bytes of pixels, not {len(request.pixels):,}.")
    rgb = images.from_array(np.frombuffer(request.pixels, np.uint8).reshape(h, w, c)).rgb
    faces = []
    for face in faces_with_skin(rgb):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        faces.append(pb.Region(x=x0, y=y0, width=max(1, x1 - x0), height=max(1, y1 - y0)))
    return pb.FindFacesReply(faces=faces)
