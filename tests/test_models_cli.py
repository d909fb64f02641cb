"""The short missing-weights error of `dermis upscale` (one line per file and one hint) and the full
list of places searched moved to `dermis doctor --verbose`."""

from __future__ import annotations

from daemon.cli import main


def test_upscale_says_what_is_missing_in_one_line_per_file_and_one_hint(portrait_path, tmp_path, capsys):
    rc = main(["upscale", str(portrait_path), "-o", str(tmp_path / "out.png"), "--quiet",
               "--comfy-models", str(tmp_path / "models")])
    assert rc == 1
    lines = capsys.readouterr().err.splitlines()
    files = [x for x in lines if x.startswith("  - ")]
    assert lines[0].startswith("dermis: error: Missing weights: preset 'supir-srpo' cannot run without")
    assert len(files) >= 6 and len(lines) == 1 + len(files) + 1
    assert "  - sdxl: checkpoints/sd_xl_base_1.0_0.9vae.safetensors (6.9 GB)" in files
    assert lines[-1].startswith("dermis: hint: `dermis models get supir-srpo` downloads what it can")
    assert not any("looked" in x.lower() or "*" in x for x in lines)  # no glob patterns, no folder lists


def test_doctor_lists_every_place_searched_only_with_verbose(tmp_path, capsys):
    args = ["doctor", "--preset", "supir", "--comfy-models", str(tmp_path / "models")]
    assert main(args) == 1
    short = capsys.readouterr().out
    assert "supir: sdxl MISSING (" in short and "looked in" not in short
    assert main([*args, "--verbose"]) == 1
    full = capsys.readouterr().out
    assert f"looked in {tmp_path / 'models' / 'checkpoints'}/[*/]" in full
