"""Run every fuzz target for a bounded time and report executions, coverage and findings.

    python tests/fuzz/run_all.py [--seconds 60] [--only images,upload]

Corpora grow in out/fuzz/<target>/ (seeded from tests/fuzz/seeds.py), inputs that crashed, hung
(> 10 s) or blew the memory limit land in out/fuzz/findings/. Each finding becomes a regression test
in tests/test_fuzz_findings.py (the input under tests/data/fuzz/). Exit status 1 if any target found
something.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fuzz.seeds import SEEDS  # noqa: E402

OUT = REPO / "out" / "fuzz"


def run(name: str, seconds: int) -> dict:
    corpus = OUT / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS[name]():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed)
    findings = OUT / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    cmd = [sys.executable, str(REPO / "tests" / "fuzz" / "target.py"), name, str(corpus),
           f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=3072", "-print_final_stats=1",
           f"-artifact_prefix={findings}/{name}-", "-max_len=65536"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 600)
    log = proc.stdout + proc.stderr
    (OUT / f"{name}.log").write_text(log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    runs = re.search(r"stat::number_of_executed_units: (\d+)", log)
    return {"name": name, "seconds": time.monotonic() - t0, "execs": int(runs.group(1)) if runs else 0,
            "cov": int(cov[-1][0]) if cov else 0, "ft": int(cov[-1][1]) if cov else 0,
            "corpus": len(list(corpus.iterdir())), "new": sorted(set(findings.iterdir()) - before),
            "rc": proc.returncode}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--only", default="", help="comma-separated targets (default: all)")
    args = ap.parse_args()
    names = [n for n in SEEDS if not args.only or n in args.only.split(",")]
    found = False
    print(f"{'target':<10} {'executions':>11} {'exec/s':>7} {'cov':>6} {'ft':>6} {'corpus':>7}  findings")
    for name in names:
        r = run(name, args.seconds)
        found |= bool(r["new"]) or r["rc"] not in (0,)
        print(f"{name:<10} {r['execs']:>11,} {r['execs'] / max(r['seconds'], 1e-9):>7.0f} {r['cov']:>6} "
              f"{r['ft']:>6} {r['corpus']:>7}  {', '.join(p.name for p in r['new']) or 'none'}"
              + (f" (exit {r['rc']}; see out/fuzz/{name}.log)" if r["rc"] else ""), flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
