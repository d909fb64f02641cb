"""Stage 2 and 3 (flux_refine): seams, seeds, cancellation, memory, and the CLI end to end on tiny FLUX."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from pipeline import Cancelled, CancelToken, MissingWeights, build, images, run
from pipeline.config import Config
from pipeline.models.flux import engine
from pipeline.models.flux import load as fl
from pipeline.models.flux import memory as flux_memory

from ._flux_helpers import (
    ConstantTransformer,
    Counting,
    LocalCodec,
    conditioning,
    flux_stages,
    velocity,
    write_preset,
)


@pytest.fixture(scope="module")
def tiny_vae(tiny_models):
    return fl.load_vae(tiny_models / "vae/ae.safetensors", torch.float32)


@pytest.fixture(scope="module")
def tiny_transformer(tiny_models):
    return fl.load_transformer(tiny_models / "diffusion_models/SRPO/diffusion_pytorch_model.safetensors",
                               torch.float32)


def _refine(rgb, transformer, codec, seed=0, cancel=None, report=None, uncond=None, placement=None, **kw):
    settings = engine.RefineSettings(**{"steps": 3, "denoise": 0.4, "tile": 256, "overlap": 128, **kw})
    cancel = cancel or CancelToken()
    vel = velocity(transformer, settings, placement=placement, cancel=cancel, uncond=uncond)
    return engine.refine(rgb, codec=codec, velocity=vel, settings=settings,
                         generator=torch.Generator().manual_seed(seed), cancel=cancel,
                         report=report or (lambda p: None))


def _frame(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------- seams


def test_multidiffusion_with_constant_velocity_equals_the_untiled_run(tiny_vae):
    codec = engine.LatentCodec(tiny_vae, None, torch.device("cpu"), tiling=False)
    rgb = _frame(264, 392)  # odd size: padded to 272x400 and cropped back
    untiled = _refine(rgb, ConstantTransformer(), codec, rows=1, cols=1)
    assert untiled.shape == rgb.shape
    for plan in ({"rows": 2, "cols": 2}, {"rows": 2, "cols": 3}, {}):
        model = ConstantTransformer()
        tiled = _refine(rgb, model, codec, **plan)
        n = len(engine.frame_plan(272, 400, engine.RefineSettings(**{"tile": 256, "overlap": 128, **plan})))
        assert n > 1 and sum(model.calls) == 3 * n
        assert torch.equal(tiled, untiled), plan


def test_per_tile_with_one_noise_field_has_no_step_at_tile_borders():
    rgb = _frame(480, 720, seed=3)
    untiled = _refine(rgb, ConstantTransformer(), LocalCodec(), mode="per_tile", rows=1, cols=1)
    tiled = _refine(rgb, ConstantTransformer(), LocalCodec(), mode="per_tile", tile_batch=2)
    assert len(engine.frame_plan(480, 720, engine.RefineSettings(tile=256))) == 15
    assert torch.equal(tiled, untiled)  # neighbours agree everywhere: nothing for the cross-fade to hide


def test_per_tile_runs_tiles_independently_with_the_real_vae(tiny_vae, tiny_transformer):
    codec = engine.LatentCodec(tiny_vae, None, torch.device("cpu"), tiling=False)
    model = Counting(tiny_transformer)
    out = _refine(_frame(256, 384), model, codec, mode="per_tile", tile_batch=1)
    assert out.shape == (1, 3, 256, 384) and torch.isfinite(out).all()
    assert model.calls == [1] * 6  # 2 tiles x 3 steps, one tile at a time


# --------------------------------------------------------------------- seeds, CFG, cancellation


def test_seed_reproduces_and_changes_the_result(tiny_vae, tiny_transformer):
    codec = engine.LatentCodec(tiny_vae, None, torch.device("cpu"), tiling=False)
    rgb = _frame(128, 192, seed=1)
    a, b = (_refine(rgb, tiny_transformer, codec, seed=7) for _ in range(2))
    c = _refine(rgb, tiny_transformer, codec, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_true_cfg_runs_a_negative_prediction_per_tile(tiny_vae, tiny_transformer):
    codec = engine.LatentCodec(tiny_vae, None, torch.device("cpu"), tiling=False)
    model = Counting(tiny_transformer)
    rgb = _frame(128, 192, seed=2)
    plain = _refine(rgb, tiny_transformer, codec)
    cfg = _refine(rgb, model, codec, true_cfg=3.0, uncond=conditioning(seed=1))
    assert model.calls == [2] * 3  # the tile with its positive and its negative prompt, in one batch
    assert not torch.equal(plain, cfg)


def test_cancel_stops_within_a_step_between_tile_batches(tiny_vae, tiny_transformer):
    codec = engine.LatentCodec(tiny_vae, None, torch.device("cpu"), tiling=False)
    model, cancel = Counting(tiny_transformer), CancelToken()
    seen = []

    def report(p):
        seen.append(p.message)
        if p.step == 3:  # step 2, first tile of 2
            cancel.cancel()

    with pytest.raises(Cancelled):
        _refine(_frame(256, 384), model, codec, cancel=cancel, report=report, tile_batch=1)
    assert len(model.calls) == 3 and seen[-1] == "step 2/3, tile 1/2"


# --------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("mode", ["model_offload", "sequential"])
def test_offload_modes_give_the_resident_result(tiny_vae, tiny_transformer, mode):
    rgb = _frame(128, 128, seed=4)
    results = []
    for m in ("resident", mode):
        placement = flux_memory.placement(m, torch.device("cpu"), {"transformer": tiny_transformer, "vae": tiny_vae})
        codec = engine.LatentCodec(tiny_vae, placement, torch.device("cpu"), tiling=m != "resident")
        try:
            results.append(_refine(rgb, tiny_transformer, codec, placement=placement, tile=1024))
        finally:
            placement.release()
    assert all(p.device.type == "cpu" for p in tiny_transformer.parameters())  # hooks removed, weights back
    # 128 px frames fit one VAE tile, so tiling changes nothing here either
    assert torch.equal(results[0], results[1])


# ---------------------------------------------------------------------- the stage, end to end


def _run_cli(tmp_path, tiny_models, src, *extra):
    from daemon.cli import main

    out = tmp_path / f"out_{src.stem}.png"
    rc = main(["upscale", str(src), "-o", str(out), "--comfy-models", str(tiny_models), "--seed", "5",
               "--quiet", *extra])
    return rc, out


def test_stage_2_and_3_run_end_to_end_from_the_cli_on_an_odd_size(tmp_path, tiny_models):
    size = (600, 904)
    write_preset("flux-test", flux_stages(steps=2, tile=512))
    src = tmp_path / f"in_{size[0]}x{size[1]}.png"
    rgb = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    images.save(images.Image(rgb=rgb, alpha=None, bit_depth=8, mode="RGB", icc_profile=None), src)
    rc, out = _run_cli(tmp_path, tiny_models, src, "--preset", "flux-test")
    assert rc == 0
    result = images.load(out)
    assert result.rgb.shape == (*size, 3)
    assert np.abs(result.rgb - images.load(src).rgb).mean() > 0.01  # refined, not passed through


def test_supir_srpo_preset_runs_stage_2_and_3_on_512(tmp_path, tiny_models, portrait_path):
    # the SUPIR stage is another issue's: disabled here, so the preset's own flux stages run as written
    rc, out = _run_cli(tmp_path, tiny_models, portrait_path, "--preset", "supir-srpo", "--scale", "1",
                       "--set", "supir.enabled=false", "--set", "refine.steps=2", "--set", "final.steps=2")
    assert rc == 0
    result = images.load(out).rgb
    assert result.shape == (512, 512, 3) and np.abs(result - images.load(portrait_path).rgb).mean() > 0.01
    recipe = build("supir-srpo")
    assert recipe.stage("refine").params["denoise"] == 0.3 and recipe.stage("final").params["denoise"] == 0.45


def test_stage_progress_and_bfl_transformer(tiny_models, portrait):
    write_preset("flux-one", flux_stages(steps=3, tile=256, stage_3=False,
                                          extra='transformer = "unet/flux1-dev.safetensors"\ntile_batch = 1'))
    events = []
    config = Config(comfy_models=(tiny_models,))
    small = images.resize(portrait, (256, 384))
    result = run(build("flux-one"), small, seed=1, progress=events.append, config=config)
    assert result.image.rgb.shape == (256, 384, 3)
    steps = [e for e in events if e.stage == "refine" and e.steps and e.preview is None]
    assert [e.step for e in steps] == list(range(1, 7)) and steps[-1].steps == 6  # 3 steps x 2 tiles
    assert steps[0].message == "step 1/3, tile 1/2" and steps[-1].message == "step 3/3, tile 2/2"
    previews = [e for e in events if e.preview is not None]  # at least the first step's (1 s apart at most)
    assert previews and previews[0].preview.dtype == np.uint8 and previews[0].preview.shape == (32, 48, 3)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)


def test_diffusers_folder_as_base(tmp_path, portrait):
    from pipeline.models.flux.tiny import build_flux_diffusers

    base = build_flux_diffusers(tmp_path / "FLUX.1-dev")
    # fit_target: the stage itself upscales 128 -> 384 first, so it works on 2x2 tiles of 256
    write_preset("flux-base", flux_stages(steps=1, tile=256, extra=f'base = "{base}"\nfit_target = true',
                                          stage_3=False), scale=3.0)
    events = []
    result = run(build("flux-base"), images.resize(portrait, (128, 128)), seed=2, config=Config(),
                 progress=events.append)
    assert result.image.rgb.shape == (384, 384, 3)
    assert any(e.message == "step 1/1, tile 4/4" for e in events)


def test_cancel_from_progress_stops_the_stage(tiny_models, portrait):
    write_preset("flux-cancel", flux_stages(steps=3, tile=256, stage_3=False))
    cancel = CancelToken()

    def progress(p):
        if p.stage == "refine" and p.step == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        run(build("flux-cancel"), images.resize(portrait, (256, 384)), seed=1, progress=progress,
            cancel=cancel, config=Config(comfy_models=(tiny_models,)))


def test_missing_component_names_the_file_it_wanted(tmp_path, tiny_models, portrait_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    (models / "vae" / "ae.safetensors").unlink()
    shutil.rmtree(models / "tokenizers" / "t5_tokenizer")
    write_preset("flux-missing", flux_stages())
    with pytest.raises(MissingWeights) as err:
        run(build("flux-missing"), images.load(portrait_path), config=Config(comfy_models=(models,)))
    text = str(err.value)  # one line per file; the places searched stay on the error (doctor --verbose)
    assert "  - flux_vae: vae/ae.safetensors (335.3 MB)" in text
    assert "  - flux_t5_tokenizer: the folder ../comfy/text_encoders/t5_tokenizer/" in text
    assert any(str(models / "vae") in p for p in err.value.looked)
    rc, _ = _run_cli(tmp_path, models, portrait_path, "--preset", "flux-missing")
    assert rc != 0
