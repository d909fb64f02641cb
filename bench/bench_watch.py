"""Benchmark: the watch folder's throughput with the lite preset, and its overhead over a plain loop.

    .venv/bin/python bench/bench_watch.py [--count 100] [--size 128] [--repeat 3]

Drops ``count`` small portrait crops into a fresh folder and times ``WatchFolder.serve(once=True)``
(in-process, the same LocalRunner `dermis watch` uses; stability window 0.05 s) from start to the last
archived original. Against it: a loop of ``pipeline.run`` on already-decoded images (the pipeline
alone) and a loop of load + ``pipeline.run`` + save (what a hand-written batch script does). The
watcher's extra work per file is the decode gate, the content hash, the journal commits
(``synchronous=FULL``: several fsyncs) and the atomic publish + archive.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from daemon.watch.folder import Options, WatchFolder  # noqa: E402
from daemon.watch.runner import LocalRunner  # noqa: E402
from daemon.watch.settings import base_settings  # noqa: E402
from pipeline import images  # noqa: E402


def crops(count: int, size: int) -> list[bytes]:
    """Distinct PNGs cut from the example portrait (real skin, not noise)."""
    portrait = images.load(REPO / "examples" / "portrait_astronaut_512.png")
    if portrait.width < 2 * size:
        portrait = images.resize(portrait, (2 * size, 2 * size))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        x, y = rng.integers(0, portrait.width - size, 2)
        rgb = portrait.rgb[y : y + size, x : x + size]
        out.append(images.encode(portrait.with_rgb(rgb), "PNG"))
    return out


def time_watcher(data: list[bytes], tmp: Path) -> float:
    inbox, out = tmp / "in", tmp / "out"
    inbox.mkdir()
    for i, d in enumerate(data):
        (inbox / f"img{i:03d}.png").write_bytes(d)
    time.sleep(0.1)  # let the writes settle: the stability window is not what is measured
    folder = WatchFolder(inbox, out, base_settings("lite"), LocalRunner(),
                         options=Options(stable_s=0.05, give_up_s=1.0, rescan_s=30.0))
    t0 = time.perf_counter()
    folder.serve(once=True)
    t = time.perf_counter() - t0
    c = folder.counts()
    folder.close()
    assert c["done"] == len(data), c
    return t


def time_loop(data: list[bytes], tmp: Path, with_io: bool) -> float:
    recipe = pipeline.build("lite")
    models = pipeline.ModelCache()
    out = tmp / "loop"
    out.mkdir(exist_ok=True)
    paths = []
    for i, d in enumerate(data):
        paths.append(tmp / f"loop_in_{i:03d}.png")
        paths[-1].write_bytes(d)
    decoded = [images.decode(d) for d in data]
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = images.load(p) if with_io else decoded[i]
        r = pipeline.run(recipe, img, seed=i, models=models)
        if with_io:
            images.save(r.image, out / f"{i:03d}.png")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, Python {platform.python_version()}")
    data = crops(args.count, args.size)
    print(f"{args.count} PNGs of {args.size}x{args.size} -> lite preset (x2) -> "
          f"{2 * args.size}x{2 * args.size}")
    base = tempfile.gettempdir()
    print(f"temp folder: {base} (fsync cost depends on this file system)")
    results: dict[str, list[float]] = {"run loop": [], "load+run+save loop": [], "watch folder": []}
    with tempfile.TemporaryDirectory() as warm:  # imports, allocator, first-call costs
        time_loop(data[:5], Path(warm), True)
    for _ in range(args.repeat):
        for name, fn in (("run loop", lambda t: time_loop(data, t, False)),
                         ("load+run+save loop", lambda t: time_loop(data, t, True)),
                         ("watch folder", lambda t: time_watcher(data, t))):
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(fn(Path(tmp)))
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, t in med.items():
        print(f"{name:20s}: median {t:6.2f} s over {args.repeat} runs = {args.count / t:6.1f} images/s, "
              f"{1000 * t / args.count:6.1f} ms/image")
    w = med["watch folder"]
    for base_name in ("run loop", "load+run+save loop"):
        b = med[base_name]
        print(f"watch folder / {base_name}: {w / b:.2f}x ({1000 * (w - b) / args.count:+.1f} ms per image)")


if __name__ == "__main__":
    main()
