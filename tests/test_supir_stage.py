"""The SUPIR stage on tiny random SDXL + SUPIR files (ComfyUI layout), 64 px and 2 steps: seeds,
progress, cancellation, plain-SDXL equivalence, tiling, and the CLI end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline
from pipeline import images
from pipeline.models.supir.pipeline import load_models
from pipeline.samplers import dpmpp_2m_sde, edm_euler
from pipeline.samplers.noise import SeededNoise
from pipeline.samplers.schedules import dpm_schedule, legacy_sigmas
from pipeline.samplers.tiles import LatentTiles
from pipeline.stages.supir import working_size
from proto.overrides import parse_overrides

FAST = ["supir.steps=2", "supir.min_size=64", "supir.size_multiple=64"]


@pytest.fixture(scope="module")
def small(tiny_models):
    rgb = np.random.default_rng(0).random((48, 48, 3), dtype=np.float32)
    return images.from_array((rgb * 255).astype(np.uint8))


CACHE = pipeline.ModelCache()  # one load for the module's runs, as the daemon keeps models


def _run(tiny_models, image, *, preset="supir", seed=1, overrides=(), progress=None, cancel=None):
    config = pipeline.load_config(comfy_models=[tiny_models])
    recipe = pipeline.build(preset, parse_overrides([*FAST, "skin_detail.enabled=false", *overrides]), scale=64 / 48)
    return pipeline.run(recipe, image, seed=seed, config=config, progress=progress, cancel=cancel, models=CACHE)


def test_seed_alias_and_lightning_preset_exist():
    assert pipeline.build("seed").preset == "supir"
    r = pipeline.build("supir-lightning")
    assert r.stage("supir").params["sampler"] == "dpmpp_2m_sde"
    assert [s.kind for s in pipeline.build("supir-srpo").stages][2] == "supir"


def test_working_size_follows_supir_test_py():
    assert working_size((512, 768), 1024, 64) == (1024, 1536)  # short side to 1024
    assert working_size((1000, 2100), 1024, 64) == (1024, 2176)  # 1000 -> 1024, 2150.4 -> 2176
    assert working_size((2048, 2048), 1024, 64) == (2048, 2048)  # never shrinks
    assert working_size((1000, 1500), 1024, 32) == (1024, 1536)


def test_stage_is_seeded_and_reports_progress(tiny_models, small):
    events = []
    a = _run(tiny_models, small, seed=5, progress=events.append)
    b = _run(tiny_models, small, seed=5)
    c = _run(tiny_models, small, seed=6)
    assert a.image.rgb.shape == (64, 64, 3) and np.isfinite(a.image.rgb).all()
    assert np.array_equal(a.image.rgb, b.image.rgb)
    assert not np.array_equal(a.image.rgb, c.image.rgb)
    steps = [e.step for e in events if e.stage == "supir" and e.steps == 2]
    assert steps == sorted(steps) and steps[-1] == 2
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)


def test_cancel_after_first_step_stops_within_a_step(tiny_models, small):
    token = pipeline.CancelToken()
    seen = []

    def progress(e):
        if e.stage == "supir" and e.steps == 2:
            seen.append(e.step)
            if e.step >= 1:
                token.cancel()

    with pytest.raises(pipeline.Cancelled):
        _run(tiny_models, small, progress=progress, cancel=token)
    assert seen == [1]


def test_lightning_preset_runs_dpmpp(tiny_models, small):
    out = _run(tiny_models, small, preset="seed_lightning", overrides=["supir.steps=3"])
    assert out.image.rgb.shape == (64, 64, 3) and np.isfinite(out.image.rgb).all()


@torch.no_grad()
def test_control_scale_zero_is_plain_sdxl(tiny_models):
    m = load_models(tiny_models / "checkpoints/sd_xl_base_1.0_tiny-random.safetensors",
                    tiny_models / "checkpoints/SUPIR-v0Q_tiny-random.ckpt", torch.float32, torch.float32)
    g = torch.Generator().manual_seed(0)
    x, hint = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([999, 300])
    ctx = torch.randn(2, 77, m.unet.unet.config.cross_attention_dim, generator=g)
    pooled, ids = torch.randn(2, 64, generator=g), torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2)
    from pipeline.models.supir.unet import vector_cond

    y = vector_cond(pooled, ids, m.unet.unet.add_time_proj)
    diffusers_out = m.unet.unet(x, t, ctx, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    feats = m.control(hint, t, x, ctx, y)
    assert torch.equal(m.unet(x, t, ctx, y, feats, 0.0), diffusers_out)
    assert torch.equal(m.unet(x, t, ctx, y, None), diffusers_out)
    assert not torch.allclose(m.unet(x, t, ctx, y, feats, 1.0), diffusers_out)


def _pixelwise(x, sigma, scale, windows=None):
    """A position-independent stand-in denoiser: tiles must fuse back to the untiled result."""
    return x * 0.3, x * 0.5 + 0.1


@pytest.mark.parametrize("sampler", ["edm", "dpm"])
def test_tiled_sampling_equals_untiled_for_a_pixelwise_model(sampler):
    x_t = torch.randn(1, 4, 40, 56, generator=torch.Generator().manual_seed(1))
    tiles = LatentTiles.plan(40, 56, tile=16, stride=8)
    assert len(tiles) == 4 * 6
    outs = []
    for t in (None, tiles):
        if sampler == "edm":
            p = edm_euler.EdmParams(s_churn=2.0, restore_cfg=4.0, linear_control=True, control_start=0.5)
            outs.append(edm_euler.sample(_pixelwise, x_t, legacy_sigmas(3), p, noise=SeededNoise(3),
                                         x_center=x_t * 0.1, tiles=t, tile_batch=5))
        else:
            outs.append(dpmpp_2m_sde.sample(_pixelwise, x_t, dpm_schedule(3), dpmpp_2m_sde.DpmParams(),
                                            noise=SeededNoise(3), tiles=t, tile_batch=5))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_one_tile_latent_is_not_tiled_and_short_sides_are_not_negative():
    assert LatentTiles.plan(128, 128) is None
    t = LatentTiles.plan(96, 300, tile=128, stride=64)
    assert all(a == 0 and b == 96 for a, b, _, _ in t.windows) and t.windows[-1][3] == 300


def test_cli_runs_stage_one_on_cpu(tiny_models, tmp_path, small):
    from daemon.cli import main

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    images.save(small, src)
    args = ["upscale", str(src), "-o", str(dst), "--preset", "supir", "--comfy-models", str(tiny_models),
            "--scale", str(64 / 48), "--seed", "3", "--quiet"]
    for s in FAST:
        args += ["--set", s]
    assert main(args) == 0
    out = images.load(dst)
    assert (out.width, out.height) == (64, 64)


def test_cli_without_weights_names_every_missing_file(tmp_path, small, capsys):
    from daemon.cli import main

    src = tmp_path / "in.png"
    images.save(small, src)
    empty = tmp_path / "models"
    empty.mkdir()
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--preset", "seed", "--comfy-models", str(empty),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "  - sdxl: checkpoints/" in err and "  - supir_v0q: checkpoints/" in err and "--preset lite" in err



def _sample(sampler, model, progress, cancel):
    x_t = torch.randn(1, 4, 40, 56, generator=torch.Generator().manual_seed(1))
    tiles = LatentTiles.plan(40, 56, tile=16, stride=8)
    if sampler == "edm":
        return edm_euler.sample(model, x_t, legacy_sigmas(3), edm_euler.EdmParams(), noise=SeededNoise(3),
                                tiles=tiles, tile_batch=6, progress=progress, cancel=cancel)
    return dpmpp_2m_sde.sample(model, x_t, dpm_schedule(3), dpmpp_2m_sde.DpmParams(), noise=SeededNoise(3),
                               tiles=tiles, tile_batch=6, progress=progress, cancel=cancel)


@pytest.mark.parametrize("sampler", ["edm", "dpm"])
def test_samplers_report_one_progress_shape_and_stop_on_the_token(sampler):
    """Both SUPIR samplers take the one CancelToken and report pipeline.Progress (tile by tile, then the
    step); cancelled when step 1 ends, no tile of step 2 runs."""
    tiles = 4 * 6
    for cancel_after in (None, 1):
        token, seen, rows = pipeline.CancelToken(), [], []

        def progress(p, token=token, seen=seen, cancel_after=cancel_after):
            seen.append(p)
            if p.step == cancel_after and p.tile == p.tiles:  # the step's own report, after its last tile
                token.cancel()

        def model(x, sigma, scale, windows=None, rows=rows):
            rows.append(x.shape[0])
            return _pixelwise(x, sigma, scale, windows)

        if cancel_after is None:
            _sample(sampler, model, progress, token)
            assert all(isinstance(p, pipeline.Progress) and p.stage == "" and p.steps == 3 for p in seen)
            assert [(p.step, p.tile) for p in seen][-1] == (3, tiles) and sum(rows) == 3 * tiles
        else:
            with pytest.raises(pipeline.Cancelled):
                _sample(sampler, model, progress, token)
            assert sum(rows) == tiles  # step 1 only
