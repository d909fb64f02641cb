"""Check Dermis's RetinaFace against facexlib's own code: same keys, same outputs, same detections.

facexlib cannot live in Dermis's environment (see pipeline/models/faces/retinaface.py), so this script loads
only its detection modules from an unpacked copy, without running ``facexlib/__init__.py`` (which needs
filterpy), and needs torchvision (facexlib's ResNet and NMS):

    pip download --no-deps facexlib==0.3.0 -d /tmp/fx && unzip -q /tmp/fx/facexlib-*.whl -d /tmp/fx/src
    python tools/check_retinaface_parity.py /tmp/fx/src [--weights detection_Resnet50_Final.pth]

Without ``--weights`` both variants get the same random weights (heads biased so that thousands of
anchors pass the threshold, which exercises decoding, tie order and NMS); with a real file, that file.
Prints the largest difference of each output and whether the detections match exactly.
Measured 2026-11-26 (facexlib 0.3.0, random weights, the example portrait): all differences 0.0,
6254 (MobileNet) and 5574 (ResNet-50) detections identical.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def import_facexlib_detection(root: Path):
    pkg = root / "facexlib"
    for name, path in (("facexlib", pkg), ("facexlib.detection", pkg / "detection")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
    from facexlib.detection.retinaface import RetinaFace

    return RetinaFace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("facexlib_root", type=Path, help="folder holding the facexlib package")
    ap.add_argument("--weights", type=Path, help="a real detection_*_Final.pth (default: random weights)")
    ap.add_argument("--image", type=Path, default=REPO / "examples" / "portrait_astronaut_512.png")
    ap.add_argument("--confidence", type=float, default=None)
    args = ap.parse_args()

    import pipeline.faces.detect as detect
    from pipeline import images
    from pipeline.models.faces.load import load_retinaface
    from pipeline.models.faces.retinaface import CONFIGS, RetinaFace

    FX = import_facexlib_detection(args.facexlib_root)
    rgb = images.load(args.image).rgb
    bgr = np.ascontiguousarray((rgb[..., ::-1] * 255).round()).astype(np.uint8)
    ok = True
    for fx_name, name in (("mobile0.25", "mobilenet0.25"), ("resnet50", "resnet50")):
        fx = FX(network_name=fx_name, device="cpu").eval()
        if args.weights:
            mine = load_retinaface(args.weights)
            if mine.cfg.variant != name:
                continue
            fx.load_state_dict(mine.state_dict(), strict=False)
            conf = args.confidence or 0.97
        else:
            torch.manual_seed(0)
            with torch.no_grad():
                for m in fx.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
                        m.running_var.uniform_(0.5, 2)
                for h in fx.ClassHead:
                    h.conv1x1.bias.copy_(torch.tensor([-2.0, 2.0, -2.0, 2.0]))
                for h in [*fx.BboxHead, *fx.LandmarkHead]:
                    h.conv1x1.weight.mul_(0.02)
            mine = RetinaFace(CONFIGS[name])
            mine.load_state_dict(fx.state_dict())
            mine.eval()
            conf = args.confidence or 0.8
        x = torch.from_numpy((bgr.astype(np.float32) - np.array([104, 117, 123], np.float32)).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            a, b = fx(x), mine(x)
        diffs = [float((a[0] - b[0]).abs().max()), float((a[1][..., 1] - b[1]).abs().max()), float((a[2] - b[2]).abs().max())]
        print(f"{name}: max |diff| loc {diffs[0]:.3g}  score {diffs[1]:.3g}  landmarks {diffs[2]:.3g}")
        with torch.no_grad():
            ref = fx.detect_faces(bgr, conf_threshold=conf, nms_threshold=0.4, use_origin_size=True)
        eye, top_k = detect.EYE_DIST_MIN, detect.PRE_NMS_TOP_K
        detect.EYE_DIST_MIN, detect.PRE_NMS_TOP_K = 0.0, 10**9  # facexlib's detect_faces has neither
        try:
            got = detect.detect_faces(rgb, mine, confidence=conf, detect_size=0)
        finally:
            detect.EYE_DIST_MIN, detect.PRE_NMS_TOP_K = eye, top_k
        rows = np.array([[*f.box, f.score, *f.landmarks.ravel()] for f in got]).reshape(-1, 15)
        same = rows.shape == ref.shape
        if same and len(rows):
            r1, r2 = ref[np.lexsort(ref[:, :2].T)], rows[np.lexsort(rows[:, :2].T)]
            same = bool(np.abs(r1 - r2).max() < 1e-3)
        print(f"  detections: facexlib {len(ref)}, dermis {len(rows)}, identical: {same}")
        ok = ok and same and max(diffs) < 1e-4
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
