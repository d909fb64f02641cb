"""SUPIR's DPM++ 2M SDE restore sampler (the reference workflow's Stage 1 sampler) against the reference's
own recordings (``shared/fixtures/supir/golden_dpmpp.*``): recorded-noise runs step by step and whole,
the tiled variant tile by tile, the raw Brownian-tree noise, and one run with the real Brownian noise.

Each test walks every golden key of its run and fails on one it does not know how to check. Sampler
settings are read from golden_dpmpp.md (the reference's own instantiation). Bounds (tests/_parity.py):
RECORDED_RUN for the recorded and Brownian runs, MODEL for a step fed the reference's own inputs, exact
for the Brownian noise on a CPU float32 tree. Every family has a negative control that must fail.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from pipeline.models.supir.denoiser import CfgDenoiser, TextCond
from pipeline.samplers import dpmpp_2m_sde
from pipeline.samplers.noise import BrownianNoise, RecordedNoise, brownian_entropy
from pipeline.samplers.schedules import (
    DpmSchedule,
    ddpm_sigma_table,
    dpm_schedule,
    legacy_sigmas,
    quantize,
)
from pipeline.samplers.tiles import LatentTiles

from ._parity import MODEL, NOISE, RECORDED_RUN, assert_parity, assert_rejected, perturbed
from ._supir_helpers import keys, parity_fixtures

pytestmark = pytest.mark.parity
RUNS = ("dpmpp_rec", "dpmpp_tiled_rec", "dpmpp_brownian")


fx, golden, models = parity_fixtures("golden_dpmpp")


def sampler_params(fx, run: str) -> dict:
    """The reference sampler's constructor params for ``run``, from golden_dpmpp.md."""
    text = (fx / "golden_dpmpp.md").read_text()
    section = re.search(rf"## `{run}`(.*?)(?=\n## |\Z)", text, re.S)
    assert section, f"golden_dpmpp.md has no section for {run}"
    m = re.search(r"with params `(\{.*?\})`", section.group(1))
    assert m, f"no sampler params in the {run} section"
    return json.loads(m.group(1))


def dpm_params(p: dict) -> dpmpp_2m_sde.DpmParams:
    guider = p["guider_config"]["params"]
    # the call passes control_scale=1.0 and no ramp (golden_dpmpp.md); eta is the constructor's default
    return dpmpp_2m_sde.DpmParams(eta=p.get("eta", 1.0), s_noise=p["s_noise"], cfg_start=guider["scale"],
                                  cfg_end=guider.get("scale_min", guider["scale"]))


def test_every_golden_tensor_belongs_to_a_checked_run(golden):
    assert [k for k in golden if not k.startswith((*RUNS, "brownian."))] == []


def test_schedule_and_tree_range_match_the_reference(golden):
    for run in (*RUNS, "brownian"):
        n = len(golden[f"{run}.sigmas"]) - 1
        s = dpm_schedule(n)
        assert torch.equal(s.sigmas, golden[f"{run}.sigmas"])  # bit for bit: float32 as k-diffusion
        if f"{run}.sigmas_discretization" in golden:
            assert torch.equal(legacy_sigmas(n), golden[f"{run}.sigmas_discretization"])
        lo, hi = (golden[f"{run}.noise_sampler_range"].tolist() if f"{run}.noise_sampler_range" in golden
                  else (float(golden[f"{run}.sigma_min"]), float(golden[f"{run}.sigma_max"])))
        assert (s.sigma_min, s.sigma_max) == (lo, hi)


# ----------------------------------------------------------------------------------- the runs


def _run(run: str, fx, g, models, *, sigma_shift: int = 0) -> dict[str, object]:
    """Our sampler on a golden run's inputs: {golden key: our tensor}. Recorded runs replay the
    reference's noise; the Brownian run regenerates it from the seed. ``sigma_shift`` moves the second
    sigma by that many steps of the 1000-step DDPM table (the negative control)."""
    i = {k.removeprefix(f"{run}.in."): g[k] for k in keys(g, f"{run}.in.")}
    params = sampler_params(fx, run)
    model = CfgDenoiser(models.unet, models.control, ddpm_sigma_table(), TextCond(i["c_crossattn"], i["c_vector"]),
                        TextCond(i["uc_crossattn"], i["uc_vector"]), i["control_z_lq"])
    if run == "dpmpp_brownian":
        noise = RecordedNoise({}, entropy=brownian_entropy(int(g[f"{run}.global_seed"])))
    else:
        noise = RecordedNoise({"sde": [g[k] for k in keys(g, f"{run}.noise.")]})
    schedule = dpm_schedule(params["num_steps"])
    if sigma_shift:
        table = ddpm_sigma_table()
        _, idx = quantize(schedule.sigmas[1:2], table)
        sigmas = schedule.sigmas.clone()
        sigmas[1] = table[int(idx) + sigma_shift]
        schedule = DpmSchedule(sigmas, schedule.sigma_min, schedule.sigma_max)
    tiles = (LatentTiles.plan(*i["x_T"].shape[-2:], tile=params["tile_size"], stride=params["tile_stride"])
             if "tile_size" in params else None)
    records: list[dict] = []
    out = dpmpp_2m_sde.sample(model, i["x_T"], schedule, dpm_params(params), noise=noise, tiles=tiles,
                              tile_batch=1, parity_record=records.append)
    ours: dict[str, object] = {f"{run}.out.x0": out, f"{run}.sigmas": schedule.sigmas,
                               f"{run}.sigmas_discretization": legacy_sigmas(params["num_steps"]),
                               f"{run}.noise_sampler_range": torch.tensor([schedule.sigma_min, schedule.sigma_max])}
    if tiles is not None:
        ours[f"{run}.tile_coords"] = torch.tensor(tiles.windows)
        ours[f"{run}.tile_weights"] = tiles.weights.float().expand(g[f"{run}.tile_weights"].shape)
    values = [float(s) for s in schedule.sigmas]
    noise_calls = [k for k in range(len(values) - 1) if k > 0 and values[k + 1] > 0]
    ours[f"{run}.noise_sigmas"] = torch.tensor([[values[k], values[k + 1]] for k in noise_calls])
    if run == "dpmpp_brownian":
        tree = BrownianNoise(i["x_T"].shape, schedule.sigma_min, schedule.sigma_max, noise.entropy or 0)
        for j, k in enumerate(noise_calls):
            ours[f"{run}.noise.{j}"] = tree(values[k], values[k + 1])
        ours[f"{run}.tree_entropy"] = torch.tensor([noise.entropy])
        ours[f"{run}.global_seed"] = g[f"{run}.global_seed"]
    tile_no = 0
    for r in records:
        k = r["step"]
        if r["tile"] == "full":
            ours[f"{run}.step.{k}.x_full_in"] = r["x_full_in"]
            if r["old_denoised_full_in"] is not None:
                ours[f"{run}.step.{k}.old_denoised_full_in"] = r["old_denoised_full_in"]
            continue
        prefix = f"{run}.step.{k}." if r["tile"] is None else f"{run}.tilestep.{tile_no}."
        tile_no += r["tile"] is not None
        q, idx = quantize(r["sigma"], ddpm_sigma_table())
        fields = {**r, "sigma_quantized": q, "timestep_idx": idx}
        for name, v in fields.items():
            if isinstance(v, torch.Tensor) or isinstance(v, float):
                ours[prefix + name] = v
            if r["tile"] is not None and name in ("sigma", "next_sigma", "previous_sigma") and v is not None:
                ours[f"{run}.step.{k}.{name}"] = v
    return ours


@pytest.mark.parametrize("run", RUNS)
@torch.no_grad()
def test_dpmpp_run(run, fx, golden, models):
    """The whole run fed by its own outputs, every recorded intermediate on the way."""
    names = keys(golden, run + ".")
    if not names:
        pytest.skip(f"this fixture set has no '{run}' run")
    ours = _run(run, fx, golden, models)
    family = {"dpmpp_rec": "supir.dpmpp", "dpmpp_tiled_rec": "supir.dpmpp_tiled"}.get(run, "supir.dpmpp_brownian")
    for k in names:
        if k.startswith(f"{run}.in.") or (k.startswith(f"{run}.noise.") and run != "dpmpp_brownian"):
            continue  # inputs, and the noise a recorded run replays
        assert k in ours, f"unknown golden tensor {k}"
        if k.startswith(f"{run}.noise."):  # the real Brownian noise, regenerated on a CPU tree
            assert_parity(ours[k], golden[k], NOISE, k, family="supir.brownian_noise")
        assert_parity(ours[k], golden[k], RECORDED_RUN, k, family=family)


@torch.no_grad()
def test_dpmpp_each_step_from_the_reference_inputs(fx, golden, models):
    """Every step alone, fed the reference's own state, D_prev and noise of that step."""
    run = "dpmpp_rec"
    if not keys(golden, run + "."):
        pytest.skip("this fixture set has no 'dpmpp_rec' run")
    g = golden
    i = {k.removeprefix(f"{run}.in."): g[k] for k in keys(g, f"{run}.in.")}
    p = dpm_params(sampler_params(fx, run))
    model = CfgDenoiser(models.unet, models.control, ddpm_sigma_table(), TextCond(i["c_crossattn"], i["c_vector"]),
                        TextCond(i["uc_crossattn"], i["uc_vector"]), i["control_z_lq"])
    sig = g[f"{run}.sigmas"].tolist()
    n = len(sig) - 1
    for k in range(n):
        x = g[f"{run}.step.0.x_in"] if k == 0 else g[f"{run}.step.{k - 1}.x_out"]
        old = g[f"{run}.step.{k - 1}.denoised_cfg"] if k else None
        xi = g[f"{run}.noise.{k - 1}"] if 0 < k < n - 1 else None
        out, den = dpmpp_2m_sde.step(model, x, old, sig[k - 1] if k else None, sig[k], sig[k + 1], xi, p, 1.0)
        assert_parity(den, g[f"{run}.step.{k}.denoised_cfg"], MODEL, f"step {k} D", family="supir.dpmpp_step")
        assert_parity(out, g[f"{run}.step.{k}.x_out"], MODEL, f"step {k} x_out", family="supir.dpmpp_step")


@torch.no_grad()
def test_brownian_tree_noise_is_the_reference(golden):
    g = golden
    if not keys(g, "brownian."):
        pytest.skip("this fixture set has no Brownian-noise record")
    entropy = brownian_entropy(int(g["brownian.global_seed"]))
    assert entropy == int(g["brownian.entropy"])
    sig = g["brownian.sigmas"].tolist()
    tree = BrownianNoise(g["brownian.x_shape"].tolist(), float(g["brownian.sigma_min"]),
                         float(g["brownian.sigma_max"]), entropy)
    known = {"brownian.entropy", "brownian.global_seed", "brownian.sigma_min", "brownian.sigma_max",
             "brownian.sigmas", "brownian.x_shape"}
    for k in keys(g, "brownian.noise."):
        K = int(k.rsplit(".", 1)[1])
        ours = tree(sig[K], sig[K + 1])
        assert_parity(ours, g[k], NOISE, k, family="supir.brownian_noise")
        known.add(k)
    assert set(keys(g, "brownian.")) == known


# ------------------------------------------------------------------------- negative controls


@torch.no_grad()
def test_negative_control_recorded_run_with_a_weight_moved(fx, golden, models):
    if not keys(golden, "dpmpp_rec."):
        pytest.skip("this fixture set has no 'dpmpp_rec' run")
    with perturbed(models.unet.unet.conv_out.weight):
        ours = _run("dpmpp_rec", fx, golden, models)
    assert_rejected(ours["dpmpp_rec.out.x0"], golden["dpmpp_rec.out.x0"], RECORDED_RUN,
                    "dpmpp_rec, UNet conv_out moved 1e-3")
    assert_rejected(ours["dpmpp_rec.step.0.denoised_cfg"], golden["dpmpp_rec.step.0.denoised_cfg"], MODEL,
                    "dpmpp_rec step 0 D, UNet conv_out moved 1e-3")


def _tile_step(fx, g, models, j: int, sigma_shift: int = 0):
    """Tile ``j`` of the tiled run's step 1 alone, fed the reference's full state, blended D_prev and
    noise of that step (``sigma_shift``: sigma_next moved that many DDPM table steps)."""
    run = "dpmpp_tiled_rec"
    i = {k.removeprefix(f"{run}.in."): g[k] for k in keys(g, f"{run}.in.")}
    model = CfgDenoiser(models.unet, models.control, ddpm_sigma_table(), TextCond(i["c_crossattn"], i["c_vector"]),
                        TextCond(i["uc_crossattn"], i["uc_vector"]), i["control_z_lq"])
    a, b, c, d = g[f"{run}.tile_coords"][j].tolist()
    sig = g[f"{run}.sigmas"].tolist()
    nxt = sig[2]
    if sigma_shift:
        table = ddpm_sigma_table()
        nxt = float(table[int(quantize(torch.tensor([nxt]), table)[1]) + sigma_shift])

    def cut(t):
        return t[:, :, a:b, c:d]

    return dpmpp_2m_sde.step(model, cut(g[f"{run}.step.1.x_full_in"]), cut(g[f"{run}.step.1.old_denoised_full_in"]),
                             sig[0], sig[1], nxt, cut(g[f"{run}.noise.0"]), dpm_params(sampler_params(fx, run)),
                             1.0, [(a, b, c, d)])


@torch.no_grad()
def test_dpmpp_tile_step_from_the_reference_inputs(fx, golden, models):
    if not keys(golden, "dpmpp_tiled_rec."):
        pytest.skip("this fixture set has no 'dpmpp_tiled_rec' run")
    tiles = len(golden["dpmpp_tiled_rec.tile_coords"])
    for j in (0, tiles - 1):  # a corner tile and the last (flush with the far edges)
        out, den = _tile_step(fx, golden, models, j)
        for name, v in (("x_out", out), ("denoised_cfg", den)):
            k = f"dpmpp_tiled_rec.tilestep.{tiles + j}.{name}"
            assert_parity(v, golden[k], MODEL, k, family="supir.dpmpp_step")


@torch.no_grad()
def test_negative_control_tile_step_with_a_sigma_one_step_off(fx, golden, models):
    if not keys(golden, "dpmpp_tiled_rec."):
        pytest.skip("this fixture set has no 'dpmpp_tiled_rec' run")
    tiles = len(golden["dpmpp_tiled_rec.tile_coords"])
    out, _ = _tile_step(fx, golden, models, 0, sigma_shift=1)
    assert_rejected(out, golden[f"dpmpp_tiled_rec.tilestep.{tiles}.x_out"], RECORDED_RUN,
                    "dpmpp_tiled_rec tile step, sigma_next one table step off")


@torch.no_grad()
def test_negative_control_brownian_run_with_a_weight_moved(fx, golden, models):
    if not keys(golden, "dpmpp_brownian."):
        pytest.skip("this fixture set has no 'dpmpp_brownian' run")
    with perturbed(models.control.conv_in.weight):
        ours = _run("dpmpp_brownian", fx, golden, models)
    assert_rejected(ours["dpmpp_brownian.out.x0"], golden["dpmpp_brownian.out.x0"], RECORDED_RUN,
                    "dpmpp_brownian, control conv_in moved 1e-3")


def test_negative_control_brownian_noise_queried_one_step_off(golden):
    g = golden
    if not keys(g, "brownian."):
        pytest.skip("this fixture set has no Brownian-noise record")
    sig = g["brownian.sigmas"].tolist()
    table = ddpm_sigma_table()
    _, idx = quantize(torch.tensor([sig[2]]), table)
    tree = BrownianNoise(g["brownian.x_shape"].tolist(), float(g["brownian.sigma_min"]),
                         float(g["brownian.sigma_max"]), int(g["brownian.entropy"]))
    shifted = tree(sig[1], float(table[int(idx) + 1]))
    assert_rejected(shifted, g["brownian.noise.1"], NOISE, "Brownian noise, sigma_next one table step off")
