"""Peak host RAM while loading a compact FLUX transformer, against the file's size (issue 15: at most
1.1x). Writes a synthetic file with FLUX.1-dev's widths (3072 hidden, real key layout) and fewer blocks
so it is a few GB, then loads it in a fresh process (``load_transformer``, bf16 compute, GGUF kept
quantised / fp8 kept fp8) while a thread samples /proc/self/status every 2 ms.

Reported per file: size; peak VmRSS above the process's RSS before loading (everything the process
touched, memory-mapped file pages included) and peak RssAnon above its start (memory the process
itself allocated), with their ratios to the size, while loading and after reading every weight once
(safetensors weights kept in their stored dtype stay memory-mapped until first used; GGUF tensors are
read into owned memory during the load); the loaded model's own bytes. Imports happen before the
baseline: they are not the load.

    python bench/bench_load_ram.py                       # Q8_0 GGUF and scaled fp8, 3 + 6 blocks (~2 GB each)
    python bench/bench_load_ram.py --depth 19 --single 38 --variants Q8_0   # the real 12.7 GB file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r"""
import json, sys, threading, time
import torch
import diffusers.models.transformers.transformer_flux, gguf, safetensors  # imports are not the load
from pipeline.models.flux.load import load_transformer
from pipeline.models.cache import module_bytes

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out

base = status()
peak = dict(base)
done = threading.Event()

def sample():
    while not done.is_set():
        for k, v in status().items():
            peak[k] = max(peak[k], v)
        time.sleep(0.002)

t = threading.Thread(target=sample, daemon=True)
t.start()
t0 = time.perf_counter()
model = load_transformer(sys.argv[1], torch.bfloat16, fp8=sys.argv[2])
seconds = time.perf_counter() - t0
loaded = dict(peak)
for p in model.parameters():  # touch every page: memory-mapped weights come in now (as a .to("cuda") does)
    p.detach().reshape(-1).view(torch.uint8)[::4096].sum()
done.set()
t.join()
for k, v in status().items():
    peak[k] = max(peak[k], v)
print(json.dumps({"base": base, "loaded": loaded, "peak": peak, "model": module_bytes(model), "seconds": seconds}))
"""


def measure(path: Path, fp8: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), fp8], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from _full_size import write_transformer

    from pipeline.models.flux.arch import FLUX_DEV

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=3, help="double-stream blocks (FLUX.1-dev: 19)")
    p.add_argument("--single", type=int, default=6, help="single-stream blocks (FLUX.1-dev: 38)")
    p.add_argument("--variants", default="Q8_0,fp8")
    p.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    arch = replace(FLUX_DEV, depth=args.depth, depth_single_blocks=args.single)
    gib = 2**30
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for variant in args.variants.split(","):
            path = Path(tmp) / ("t.gguf" if variant != "fp8" else "t.safetensors")
            write_transformer(path, arch, variant)
            size = path.stat().st_size
            r = measure(path, "keep")
            print(f"{variant}: {args.depth}+{args.single} blocks, file {size / gib:.2f} GiB, loaded in {r['seconds']:.1f} s, "
                  f"the model holds {r['model'] / gib:.2f} GiB")
            for phase, label in (("loaded", "while loading"), ("peak", "after touching every weight page")):
                rss = r[phase]["VmRSS"] - r["base"]["VmRSS"]
                anon = r[phase]["RssAnon"] - r["base"]["RssAnon"]
                print(f"  {label}: peak RSS +{rss / gib:.2f} GiB ({rss / size:.2f}x the file), of which anonymous "
                      f"+{anon / gib:.2f} GiB ({anon / size:.2f}x)")
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
