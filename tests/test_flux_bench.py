"""The GPU benchmark's own logic, at toy size on the CPU (it measures nothing here; see bench/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_flux_gpu.py"


def test_bench_script_runs_every_memory_mode_at_toy_size(capsys):
    spec = importlib.util.spec_from_file_location("bench_flux_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rc = bench.main(["--toy", "--device", "cpu", "--size", "256", "--steps", "2", "--tile", "256",
                     "--rows", "2", "--cols", "2", "--text-tokens", "8", "--no-warmup",
                     "--sequential-steps", "1"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in lines if line.split()[0] in bench.MODES}
    assert set(table) == set(bench.MODES)
    for mode, cols in table.items():
        steps, wall, forwards, ratio = int(cols[1]), float(cols[2]), float(cols[5]), float(cols[6])
        assert forwards <= wall and ratio >= 1.0
        assert steps == (1 if mode == "sequential" else 2)
        assert cols[8:10] == [str(steps), "4"]  # one batched call over the 4 tiles per step
