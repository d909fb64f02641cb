"""Stage 1 as the reference workflow runs it: the presets' settings against the workflow's table, the
working-size limit, when sampling tiles, previews of x0, and no host synchronisation in the step loop."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import pipeline
from pipeline import images, previews
from pipeline.config import Config
from pipeline.models.supir.budget import (
    DEFAULT_TILE,
    SamplerPlan,
    bytes_per_latent_pixel,
    plan_sampling,
)
from pipeline.models.supir.denoiser import CfgDenoiser, TextCond
from pipeline.models.supir.pipeline import load_models
from pipeline.samplers import dpmpp_2m_sde, edm_euler
from pipeline.samplers.noise import RecordedNoise
from pipeline.samplers.schedules import ddpm_sigma_table, dpm_schedule, legacy_sigmas
from pipeline.samplers.tiles import LatentTiles
from pipeline.stages import make_params, supir

from .conftest import SHARED

# shared/docs/reference/seed_workflow.md, "Settings table" (kijai/ComfyUI-SUPIR node defaults + the post)
WORKFLOW = {
    "sampler": "dpmpp_2m_sde",  # RestoreDPMPP2MSampler
    "steps": 45,
    "cfg_start": 4.0, "cfg": 4.0,  # cfg_scale_start -> cfg_scale_end
    "s_churn": 5.0,  # EDM_s_churn (EDM only)
    "s_noise": 1.003,
    "eta": 1.0,  # DPMPP_eta
    "control_start": 1.0, "control": 1.0,
    "restoration": -1.0,  # restore_cfg -1 (off)
    "prompt": "",  # no caption
    "a_prompt": "high quality, detailed", "n_prompt": "bad quality, blurry, messy",
    "tile": "auto",  # RestoreDPMPP2MSampler samples untiled; Dermis tiles only when it must
    "tile_stride": 64,  # the tiled variants' 512 px stride
    "vae_tile": "auto",  # tiled VAE with synchronised statistics, only when the untiled pass does not fit
}


def _supir_params(preset: str, overrides: dict | None = None):
    recipe = pipeline.build(preset, overrides)
    return make_params(supir, recipe.stage("supir").params, "supir")


@pytest.mark.parametrize("preset", ["supir", "seed", "supir-srpo"])
def test_the_presets_run_the_workflows_stage_1(preset):
    p = _supir_params(preset)
    assert {k: getattr(p, k) for k in WORKFLOW} == WORKFLOW
    edm = _supir_params(preset, {"supir.sampler": "edm"})  # the post's advice against artifacts
    assert {k: getattr(edm, k) for k in WORKFLOW} == {**WORKFLOW, "sampler": "edm"}


def test_the_table_above_is_the_reference_document():
    doc = SHARED / "docs" / "reference" / "seed_workflow.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not found")
    rows = {m.group(1).strip(): m.group(2).strip()
            for m in re.finditer(r"^\| SUPIR_\w+ \| ([^|]+) \| ([^|]+) \|", doc.read_text(), re.M)}
    assert rows["sampler"].startswith("RestoreDPMPP2MSampler")
    assert int(rows["steps"]) == WORKFLOW["steps"]
    assert rows["cfg_scale_start → cfg_scale_end"].startswith(f"{WORKFLOW['cfg_start']} → {WORKFLOW['cfg']}")
    assert rows["control_scale_start → end"] == f"{WORKFLOW['control_start']} → {WORKFLOW['control']}"
    assert float(rows["EDM_s_churn"].split()[0]) == WORKFLOW["s_churn"]
    assert float(rows["s_noise"]) == WORKFLOW["s_noise"] and float(rows["DPMPP_eta"]) == WORKFLOW["eta"]
    assert rows["restore_cfg"].startswith("−1") and WORKFLOW["restoration"] < 0
    assert rows["positive / negative prompt"].startswith(f'"{WORKFLOW["a_prompt"]}" / "{WORKFLOW["n_prompt"]}"')


def test_the_quality_preset_is_supirs_gradio_quality():
    p = _supir_params("supir-quality")
    assert (p.sampler, p.steps, p.cfg_start, p.cfg, p.s_churn, p.s_noise, p.control, p.restoration, p.color_fix) == (
        "edm", 50, 4.0, 7.5, 5.0, 1.003, 1.0, -1.0, "wavelet")
    assert p.a_prompt.startswith("Cinematic, High Contrast") and p.n_prompt.endswith("over-smooth")


def test_a_working_canvas_above_the_limit_is_refused_before_any_model_loads(tiny_models):
    strip = images.from_array(np.zeros((15, 1000, 3), np.uint8))  # x2 -> a 30 x 2000 target
    cache = pipeline.ModelCache()
    with pytest.raises(pipeline.InvalidParameter) as e:
        pipeline.run(pipeline.build("supir", scale=2.0), strip, config=Config(comfy_models=(tiny_models,)),
                     models=cache, device="cpu")
    text = str(e.value)
    assert "68288x1024 canvas (69,926,912 pixels)" in text and "2000x30 result" in text
    assert f"{Config().max_work_pixels:,}" in text and "max_work_pixels" in text and "--" not in text
    assert cache.entries() == []  # not even the SkinDiffDetail stage before SUPIR loaded its model
    # the same strip at a short side SUPIR does not enlarge as much fits
    supir.preflight(make_params(supir, {"min_size": 64}, "supir"), (30, 2000), Config())


def test_sampling_is_untiled_when_it_fits_and_balanced_when_it_does_not():
    per_px = bytes_per_latent_pixel(320, torch.bfloat16)  # SDXL
    gib = 1 << 30
    # 2048² output = 256² latent: untiled on an H200-sized budget, as the workflow samples it
    assert plan_sampling(256, 256, tile="auto", tile_batch=0, available=100 * gib, per_pixel=per_px).tile == 0
    tight = plan_sampling(256, 256, tile="auto", tile_batch=0, available=2 * gib, per_pixel=per_px)
    assert tight.tile == DEFAULT_TILE and tight.tile_batch == 2 * gib // (128 * 128 * per_px)
    assert plan_sampling(256, 256, tile=0, tile_batch=0, available=1, per_pixel=per_px).tile == 0  # never
    assert plan_sampling(256, 256, tile=96, tile_batch=3, available=100 * gib, per_pixel=per_px) == SamplerPlan(96, 3)
    nine = LatentTiles.plan(256, 256, tile=128, stride=64)
    assert len(nine) == 9
    assert [len(b) for b in nine.batches(5)] == [5, 4]
    assert [len(b) for b in nine.batches(4)] == [3, 3, 3]  # not 4 + 4 + 1
    assert [len(b) for b in nine.batches(1)] == [1] * 9 and [len(b) for b in nine.batches(12)] == [9]


def test_stage_1_sends_x0_previews(tiny_models, monkeypatch):
    monkeypatch.setattr(previews, "MIN_INTERVAL_S", 0.0)  # tiny steps are faster than the 1 s spacing
    image = images.from_array((np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8))
    config, cache = Config(comfy_models=(tiny_models,)), pipeline.ModelCache()

    def run(n: int) -> list:
        events: list = []
        recipe = pipeline.build("supir", {"skin_detail.enabled": "false", "supir.steps": "8", "supir.min_size": "64",
                                          "supir.previews": str(n)}, scale=64 / 48)
        pipeline.run(recipe, image, seed=1, config=config, progress=events.append, models=cache, device="cpu")
        return [e for e in events if e.preview is not None]

    def steps(shown: list) -> list:  # the sampler's x0 previews (a run-level one after a stage has step 0)
        return [e for e in shown if e.step > 0]

    every = run(4)
    shown = steps(every)
    assert [e.step for e in shown] == [2, 4, 6]  # 4 per stage over 8 steps; the last step is the result
    assert all(e.stage == "supir" and e.preview.dtype == np.uint8 and e.preview.shape == (8, 8, 3) for e in shown)
    assert len({e.preview.tobytes() for e in shown}) == 3  # the x0 estimate changes
    none = run(0)
    assert steps(none) == [] and len(none) == len(every) - 3  # only pipeline.run's image after the stage


def _on_meta(models, h: int, w: int):
    """The real SUPIR denoiser with every tensor on the meta device: any host synchronisation (``.item()``,
    ``float(t)``, ``.cpu()``, ``nonzero``...) raises there."""
    meta = torch.device("meta")
    models.unet.to(meta)
    models.control.to(meta)
    cfg = models.unet.unet.config
    text = TextCond(torch.zeros(1, 77, cfg["cross_attention_dim"], device=meta),
                    torch.zeros(1, cfg["projection_class_embeddings_input_dim"], device=meta))
    return CfgDenoiser(models.unet, models.control, ddpm_sigma_table(), text, text, torch.zeros(1, 4, h, w, device=meta))


@torch.inference_mode()
def test_the_step_loops_never_wait_for_the_host(tiny_models):
    models = load_models(tiny_models / "checkpoints/sd_xl_base_1.0_tiny-random.safetensors",
                         tiny_models / "checkpoints/SUPIR-v0Q_tiny-random.ckpt", torch.float32, torch.float32,
                         text_encoders=False)
    model = _on_meta(models, 24, 24)
    x = torch.zeros(1, 4, 24, 24, device="meta")

    def noise(purpose):
        return RecordedNoise({purpose: [torch.zeros_like(x)] * 8})

    for tiles in (None, LatentTiles.plan(24, 24, tile=16, stride=8)):
        out = dpmpp_2m_sde.sample(model, x, dpm_schedule(4), dpmpp_2m_sde.DpmParams(), noise=noise("sde"),
                                  tiles=tiles, tile_batch=3)
        out = edm_euler.sample(model, out, legacy_sigmas(4), edm_euler.EdmParams(), noise=noise("churn"),
                               tiles=tiles, tile_batch=3)
        assert out.device.type == "meta" and out.shape == x.shape

    def syncing(x, sigma, scale, windows=None):  # the negative control: one float() per call
        float(sigma[0])
        return model(x, sigma, scale, windows)

    with pytest.raises((RuntimeError, NotImplementedError)):
        dpmpp_2m_sde.sample(syncing, x, dpm_schedule(4), dpmpp_2m_sde.DpmParams(), noise=noise("sde"))
