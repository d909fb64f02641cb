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
                     "--rows", "2", "--cols", "2", "--text-tokens", "8", "--no-warmup"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in lines if line.split()[0] in bench.MODES}
    assert set(table) == set(bench.MODES)
    for cols in table.values():
        wall, forwards, ratio = float(cols[1]), float(cols[4]), float(cols[5])
        assert forwards <= wall and ratio >= 1.0
        assert cols[7:9] == ["2", "4"]  # 2 steps, each one batched call over the 4 tiles
