"""Face restore: the workflow's optional "Restore Face" step (ComfyUI-ReActor's RestoreFace node).

Images from edit models (Qwen Edit, Flux Kontext, Nano Banana) can carry damaged eyes, teeth and skin;
a face restorer redraws each face from a learned prior before SUPIR sees it. As in ReActor
(Gourieff/ComfyUI-ReActor ``restore_face``, built on facexlib's FaceRestoreHelper):

1. detect faces and their 5 landmarks with RetinaFace (``pipeline.models.faces.retinaface``);
2. align each to the FFHQ 512² template with a similarity transform (``pipeline.faces.align``);
3. restore the crop with GFPGAN v1.3/v1.4 or CodeFormer via spandrel (``pipeline.models.faces.restorers``);
4. paste it back through the inverse transform and a feathered mask, blended by ``visibility``.

Off by default in the ``supir-srpo`` preset (``--set face_restore.enabled=true``). Weights: ``gfpgan``
or ``codeformer`` in ``facerestore_models/``, ``retinaface_resnet50`` / ``retinaface_mobilenet`` in
``facedetection/`` (docs/face_restore.md). CodeFormer's weights are non-commercial (S-Lab License 1.0).

Not done (ReActor does it): the ParseNet face-parsing mask that keeps hair and background out of the
paste; here the whole aligned square is pasted with a soft edge, as facexlib does without ``use_parse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..device import parse_dtype
from ..errors import InvalidParameter
from ..faces import Face, align, detect_faces, paste_face, warp_face
from ..models.faces.load import load_face_restorer, load_retinaface
from .context import StageContext

COST = 0.5
# ReActor's detector names -> Dermis weight names (a TOML key cannot hold "0.25" without quotes)
DETECTOR_ALIASES = {"retinaface_mobile0.25": "retinaface_mobilenet"}


@dataclass(frozen=True)
class Params:
    model: str = "gfpgan"  # gfpgan | codeformer (weights names, see `dermis doctor`) or a .pth path
    detector: str = "retinaface_resnet50"  # retinaface_resnet50 | retinaface_mobilenet, or a .pth path
    visibility: float = 1.0  # 0 = original face, 1 = restored face (ReActor's visibility)
    fidelity: float = 0.5  # CodeFormer only: 0 = strongest prior (prettier), 1 = closest to the input
    max_faces: int = 0  # restore at most this many faces, largest first; 0 = all
    min_face: int = 32  # px: faces whose box is smaller (shorter side) are left alone
    confidence: float = 0.97  # detector score a face needs (facexlib's helper uses 0.97)
    detect_size: int = 640  # px: shorter side resized to this for detection (0 = as is), as ReActor
    use_selection: bool = True  # only faces inside the job's selection, pasted only inside it
    precision: Literal["auto", "fp32", "bf16"] = "fp32"  # one 512² crop per face: fp32 costs little

    def validate(self) -> None:
        for name, lo, hi in (("visibility", 0, 1), ("fidelity", 0, 1), ("confidence", 0, 1)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise InvalidParameter(f"face_restore.{name} must be between {lo} and {hi}, not {v}.")
        if not (0 <= self.max_faces <= 1000 and 0 <= self.min_face <= 65535):
            raise InvalidParameter("face_restore.max_faces must be 0-1000 (0 = all) and min_face 0-65535 px.")
        if self.detect_size != 0 and not 64 <= self.detect_size <= 4096:
            raise InvalidParameter(
                f"face_restore.detect_size must be 0 (as is) or 64..4096 px, not {self.detect_size}.")
        if not self.model.strip() or not self.detector.strip():
            raise InvalidParameter("face_restore.model and face_restore.detector must name weights or files.")


def detector_weight(params: Params) -> str:
    return DETECTOR_ALIASES.get(params.detector, params.detector)


def weights(params: Params) -> list[str]:
    return [params.model, detector_weight(params)]


def run(rgb: np.ndarray, params: Params, ctx: StageContext) -> np.ndarray:
    if params.visibility <= 0:
        ctx.log("visibility is 0: faces left as they are")
        ctx.progress(1, 1)
        return rgb
    selection = ctx.mask if params.use_selection else None

    # 1. Detect, then keep what the parameters and the selection ask for, largest first
    faces = select_faces(find_faces(rgb, params, ctx), params, selection)
    if not faces:
        ctx.log("no faces found: image unchanged")
        ctx.progress(1, 1)
        return rgb

    # 2. Load the restorer (kept resident by the model cache between jobs)
    path = Path(ctx.weights[params.model])
    dtype = parse_dtype(params.precision, ctx.dtype)
    restorer = ctx.models.get(f"face_restorer:{path}:{ctx.device}:{dtype}",
                              lambda: load_face_restorer(path, ctx.device, dtype))

    # 3. Align, restore, paste back; each crop comes from the input, each paste lands on the result
    out = rgb
    n = len(faces)
    done = 0
    for i, face in enumerate(faces, 1):
        ctx.cancel.check()
        al = align(face.landmarks) if face.landmarks is not None else None
        if al is None:
            ctx.log(f"face {i}: its landmarks do not fit the face template, skipped")
            continue
        crop = warp_face(rgb, al)
        restored = restorer.restore(crop, fidelity=params.fidelity, seed=(ctx.seed + i) % 2**63)
        out = paste_face(out, restored, al, opacity=params.visibility, selection=selection)
        done += 1
        ctx.progress(i, n, message=f"{restorer.arch} face {i}/{n} ({face.size:.0f} px)")
    ctx.log(f"restored {done} face{'s' if done != 1 else ''} with {restorer.arch} ({path.name})")
    return out


def find_faces(rgb: np.ndarray, params: Params, ctx: StageContext) -> list[Face]:
    """All faces RetinaFace finds in the stage input (tests replace this with recorded landmarks)."""
    path = Path(ctx.weights[detector_weight(params)])
    net = ctx.models.get(f"retinaface:{path}:{ctx.device}", lambda: load_retinaface(path, ctx.device))
    ctx.cancel.check()
    return detect_faces(rgb, net, confidence=params.confidence, detect_size=params.detect_size)


def select_faces(faces: list[Face], params: Params, selection: np.ndarray | None) -> list[Face]:
    """Drop faces below ``min_face`` or outside the selection; largest first; at most ``max_faces``."""
    kept = []
    for f in faces:
        if f.size < params.min_face:
            continue
        if selection is not None:
            cx, cy = f.centre
            h, w = selection.shape
            # a face belongs to the selection when its centre (between eyes and mouth) does
            if not (0 <= cx < w and 0 <= cy < h) or selection[int(cy), int(cx)] < 0.5:
                continue
        kept.append(f)
    kept.sort(key=lambda f: f.area, reverse=True)
    return kept[: params.max_faces] if params.max_faces else kept
