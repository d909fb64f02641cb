"""Benchmark: how long Krita's UI thread stands still while Dermis reads, converts and inserts a
4096x4096 16-bit image (issue #17: never more than 0.5 s).

    .venv/bin/python bench/bench_krita_ui.py [--profile srgb|linear|both] [--runs 1]

tests/test_krita_gui.py's 4096² scenario alone, in Krita's real window under Xvfb against a real
daemon (one grain stage at strength 0, so the daemon's share is small): a 20 ms heartbeat timer on
Krita's UI thread records every gap; the plugin times each of its own UI-thread steps (wall clock and
the UI thread's CPU time, plugin_krita/uitime.py). ``srgb``: the pixels go as they are; ``linear``
(sRGB-elle-V2-g10): converted to 16-bit sRGB and back, a 1 MiB strip per step. Prints the longest
gaps, the steps and the load average: on a shared machine the gaps grow with the load.

Measured (2-core AMD EPYC VM, CPU, shared with other jobs), heartbeat max gap while the plugin
read, converted, prepared and inserted; the slowest plugin step by the UI thread's CPU time:

    load 1.7-2.6  srgb    0.278 s (run 9.9 s); steps <= 0.064 s CPU; add layer 0.42 s wall
                  linear  0.183 s (run 21.7 s); 384 strips of 1 MiB converted, 9.0 s in all,
                          <= 0.20 s wall / 0.10 s CPU each; add layer 2.4 s wall / 0.31 s CPU
    load 3.6-4.7  srgb    0.483 s (run 15.6 s)
                  linear  0.301 s (run 18.9 s)

addChildNode ("add layer") waits inside Krita while Krita's threads composite the whole canvas, and
Krita runs its event loop meanwhile: the heartbeat keeps ticking through its seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import _krita_helpers as kh  # noqa: E402
from tests.test_krita_gui import FAST_PRESET, LINEAR, SEED, big_spec, gui_profile, run_spec  # noqa: E402

PROFILES = {"srgb": "sRGB-elle-V2-srgbtrc.icc", "linear": LINEAR}


def one_run(base: Path, icc: str) -> dict:
    daemon = kh.serve(base / "daemon", presets={"lite-fast": FAST_PRESET})
    try:
        profile, env, _ = gui_profile(base, daemon)
        spec = {"out": str(profile / "gui.json"), "only_big": True, "seed": SEED, "hard_timeout_s": 420,
                "big": dict(big_spec(profile, icc), rows_out="")}
        return run_spec(profile, env, spec)["big"]
    finally:
        daemon.stop(signal.SIGINT, timeout=15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=[*PROFILES, "both"], default="both")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if shutil.which("krita") is None or shutil.which("xvfb-run") is None:
        sys.exit("needs krita and xvfb-run")
    names = list(PROFILES) if args.profile == "both" else [args.profile]
    for name in names:
        for k in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-krita-ui-") as tmp:
                load = os.getloadavg()
                b = one_run(Path(tmp), PROFILES[name])
            print(f"\n{name} #{k + 1}: load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
                  f"run {b['seconds']:.1f} s, press returned after {b['trigger_s']:.3f} s")
            print(f"  heartbeat: max gap {b['plugin_gap_s']:.3f} s while the plugin read/converted/inserted, "
                  f"{b['max_gap_s']:.3f} s over the whole run ({b['ticks']} ticks)")
            print("  gaps over 0.25 s:", b["gaps"])
            print(f"  {'step':<22}{'count':>7}{'max s':>9}{'max CPU s':>11}{'total s':>9}")
            for step, (count, wall, cpu, total) in sorted(b["ui_steps"].items(), key=lambda kv: -kv[1][2]):
                print(f"  {step:<22}{count:>7}{wall:>9.3f}{cpu:>11.3f}{total:>9.2f}")


if __name__ == "__main__":
    main()
