"""The `dermis` command line, called in-process through main([...])."""

import subprocess
import sys

import numpy as np
import pytest

from daemon.cli import main
from pipeline import images

from .conftest import DATA, REPO


def test_upscale_lite_writes_result_and_comparison(portrait_path, tmp_path, capsys):
    out, cmp = tmp_path / "o.png", tmp_path / "cmp.png"
    rc = main(["upscale", str(portrait_path), "-o", str(out), "--preset", "lite", "--seed", "3",
               "--compare", str(cmp), "--quiet", "--scale", "1.5"])
    assert rc == 0
    img = images.load(out)
    assert img.size == (768, 768)
    assert images.load(cmp).width == 2 * 768
    said = capsys.readouterr()
    assert "seed 3" in said.out and "lite" in said.err and "not diffusion" in said.err
    # same seed -> identical file content
    out2 = tmp_path / "o2.png"
    main(["upscale", str(portrait_path), "-o", str(out2), "--preset", "lite", "--seed", "3", "--quiet", "--scale", "1.5"])
    assert out.read_bytes() == out2.read_bytes()


def test_upscale_region_mask_layer_and_set(portrait_path, tmp_path, capsys):
    out = tmp_path / "layer.png"
    rc = main(["upscale", str(portrait_path), "-o", str(out), "--preset", "lite", "--region", "180,60,100,110",
               "--layer", "--set", "grain.strength=0.05", "--set", "scale=1", "--quiet"])
    assert rc == 0
    layer = images.load(out)
    assert layer.mode == "RGBA" and layer.width < 512
    assert "layer offset" in capsys.readouterr().out
    mask = np.zeros((512, 512), np.uint8)
    mask[100:200, 200:300] = 255
    mpath = tmp_path / "m.png"
    images.save(images.from_array(mask), mpath)
    out2 = tmp_path / "masked.png"
    assert main(["upscale", str(portrait_path), "-o", str(out2), "--preset", "lite", "--mask", str(mpath),
                 "--scale", "1", "--quiet"]) == 0
    a, b = images.load(out2).rgb, images.load(portrait_path).rgb
    assert np.array_equal(a[400:], b[400:]) and not np.array_equal(a[120:180, 220:280], b[120:180, 220:280])


@pytest.mark.parametrize("name", ["truncated.png", "empty.png", "not_an_image.png", "bomb_30000x30000.png", "int32.tif"])
def test_bad_input_gives_an_error_and_no_output(name, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc = main(["upscale", str(DATA / name), "-o", str(out), "--preset", "lite", "--quiet"])
    assert rc != 0
    assert not out.exists() and list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert err.startswith("dermis: error:") and name in err


def test_default_preset_without_weights_names_files_and_suggests_lite(portrait_path, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc = main(["upscale", str(portrait_path), "-o", str(out), "--quiet", "--comfy-models", str(tmp_path)])
    assert rc != 0 and not out.exists()
    err = capsys.readouterr().err
    assert "--preset lite" in err
    # never a silent fallback: nothing written, the preset named is the one that failed
    assert "supir-srpo" in err or "stage" in err


def test_input_is_never_overwritten(portrait_path, tmp_path, capsys):
    src = tmp_path / "in.png"
    src.write_bytes(portrait_path.read_bytes())
    before = src.read_bytes()
    rc = main(["upscale", str(src), "-o", str(src), "--preset", "lite", "--quiet"])
    assert rc == 2 and src.read_bytes() == before
    assert "overwrite the input" in capsys.readouterr().err


def test_bad_output_extension_fails_before_work(portrait_path, tmp_path, capsys):
    assert main(["upscale", str(portrait_path), "-o", str(tmp_path / "x.gif"), "--preset", "lite"]) == 2
    assert ".gif" in capsys.readouterr().err


def test_presets_doctor_and_tiny_models(tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "supir-srpo (default)" in out and "lite" in out
    assert main(["dev", "make-tiny-models", str(tmp_path / "m"), "--family", "spandrel"]) == 0
    assert (tmp_path / "m" / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth").is_file()
    capsys.readouterr()
    main(["doctor", "--comfy-models", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert "device: CPU" in out and "preset lite: ready" in out
    assert "skin_detail -> " + str(tmp_path / "m" / "upscale_models") in out


def test_doctor_says_which_flux_transformer_and_what_each_mode_holds(tmp_path, tiny_models, capsys):
    import shutil

    unet = tmp_path / "unet"
    unet.mkdir()
    for name in ("flux1-dev-Q8_0.gguf", "flux1-dev-fp8-e4m3fn-scaled.safetensors"):
        shutil.copy(tiny_models / "unet/variants" / name, unet)
    for sub in ("vae", "text_encoders"):
        shutil.copytree(tiny_models / sub, tmp_path / sub)
    main(["doctor", "--comfy-models", str(tmp_path), "--preset", "supir-srpo"])
    out = capsys.readouterr().out.split("FLUX (stages refine, final):")[1]
    assert f"transformer: {unet / 'flux1-dev-fp8-e4m3fn-scaled.safetensors'}" in out
    assert "fp8 e4m3fn, scaled" in out and "matches flux1-dev*.safetensors in" in out
    assert "weight_dtype auto: fp8 file widened" in out and "also found" in out and "flux1-dev-Q8_0.gguf" in out
    assert "clip" in out and "t5" in out and "vae" in out
    for mode in ("resident", "model_offload", "sequential"):
        assert f"  {mode} " in out and "encoding prompts" in out


def test_console_script_runs_as_a_real_process(portrait_path, tmp_path):
    out = tmp_path / "o.jpg"
    proc = subprocess.run([sys.executable, "-m", "daemon", "upscale", str(portrait_path), "-o", str(out),
                           "--preset", "lite", "--scale", "1", "--seed", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert images.load(out).size == (512, 512)
