"""Time the face_restore stage's parts: detection, and one face through GFPGAN and CodeFormer.

Random weights in the real architectures cost the same as the real files, so no download is needed:

    python bench/bench_face_restore.py [--device cuda] [--repeat 3]

Prints seconds per call (median of ``--repeat``) after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(fn, repeat: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from pipeline import images
    from pipeline.faces import align, detect_faces, warp_face
    from pipeline.models.faces.load import load_face_restorer, load_retinaface
    from pipeline.models.faces.tiny import build_faces

    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rgb = images.load(REPO / "examples" / "portrait_astronaut_512.png").rgb
    landmarks = [[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]]
    crop = warp_face(rgb, align(landmarks))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_faces(Path(tmp))
        for key in ("retinaface_mobilenet", "retinaface_resnet50"):
            net = load_retinaface(paths[key], dev)
            s = timed(lambda net=net: detect_faces(rgb, net), args.repeat, sync)
            print(f"{key:22s} detect 512² (resized to 640): {s:.3f} s")
        for key in ("gfpgan", "codeformer"):
            r = load_face_restorer(paths[key], dev, torch.float32)
            s = timed(lambda r=r: r.restore(crop), args.repeat, sync)
            print(f"{key:22s} restore one 512² face, fp32: {s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
