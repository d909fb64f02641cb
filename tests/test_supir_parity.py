"""SUPIR parity: every golden tensor of the reference implementation (``shared/fixtures/supir``),
reproduced through Dermis's own loaders from the tiny checkpoints in the original key layouts.

Each test walks every golden key of its group and fails on one it does not know how to check, so a
fixture set with more tensors cannot pass silently. Sampler settings are read from golden.md (the
reference's own call), so another fixture set with the same file names is checked the same way.
Bounds (tests/_parity.py): 1e-4 x max|ref| for model-level tensors and for sampler runs on recorded noise; each family
has a negative control that a 1e-3 weight perturbation (or a sigma moved one step) must fail.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from pipeline import colorfix
from pipeline.models.supir.denoiser import CfgDenoiser, TextCond, denoise
from pipeline.models.supir.pipeline import (
    Settings,
    decode,
    encode_lq,
    encode_sample,
    restore,
)
from pipeline.models.supir.unet import vector_cond
from pipeline.samplers import edm_euler
from pipeline.samplers.noise import RecordedNoise
from pipeline.samplers.schedules import ddpm_sigma_table, legacy_sigmas, quantize
from pipeline.samplers.tiles import LatentTiles

from ._parity import MODEL, RECORDED_RUN, assert_parity, assert_rejected, perturbed
from ._supir_helpers import keys, parity_fixtures

pytestmark = pytest.mark.parity
GROUPS = ("inputs.", "control.", "unet.", "wrapper.", "denoiser.", "vae.", "colorfix.", "edm_det.", "edm_churn.",
          "edm_tiled.", "e2e.")


fx, golden, models = parity_fixtures("golden")


def run_calls(fx) -> dict[str, dict]:
    """{run: {"params": sampler params, "call": call kwargs}} parsed from golden.md."""
    text = (fx / "golden.md").read_text()
    runs = {}
    for m in re.finditer(r"## `(\w+)`(.*?)(?=\n## |\Z)", text, re.S):
        name, body = m.group(1), m.group(2)
        p = re.search(r"with params `(\{.*?\})`; called as `sampler\(.*?\*\*(\{.*?\})\)`", body)
        e = re.search(r"batchify_sample\([^`]*?\*\*(\{.*?\})\)`", body)
        if p:
            runs[name] = {"params": json.loads(p.group(1)), "call": json.loads(p.group(2))}
        elif e:
            runs[name] = {"call": json.loads(e.group(1))}
    return runs


def test_every_golden_tensor_belongs_to_a_checked_group(golden):
    assert [k for k in golden if not k.startswith(GROUPS)] == []


def test_loader_consumed_every_tensor_but_mask_lq(fx):
    from pipeline.models.supir.load import IGNORED
    from pipeline.models.tensor_files import TensorSource

    with TensorSource.open(fx / "tiny_supir.safetensors") as ck:
        assert IGNORED <= set(ck.keys())  # the stray training buffer is there and was dropped


def test_vector_conditioning_from_pooled_and_size_ids(golden, models):
    y = vector_cond(golden["inputs.y_pooled"], golden["inputs.y_time_ids"], models.unet.unet.add_time_proj)
    assert_parity(y, golden["inputs.y"], MODEL, "inputs.y", family="supir.unet")


@torch.no_grad()
def test_control_features(golden, models):
    g = golden
    feats = models.control(g["inputs.hint"], g["inputs.timesteps"], g["inputs.unet_x"], g["inputs.context"], g["inputs.y"])
    names = keys(g, "control.")
    assert len(names) == len(feats)
    for k in names:
        assert_parity(feats[int(k.split(".")[1])], g[k], MODEL, k, family="supir.control")


@torch.no_grad()
def test_unet_with_control_at_every_scale(golden, models):
    g = golden
    args = (g["inputs.unet_x"], g["inputs.timesteps"], g["inputs.context"], g["inputs.y"])
    control = [g[f"control.{i}"] for i in range(len(keys(g, "control.")))]
    for k in keys(g, "unet.") + keys(g, "wrapper."):
        if k == "unet.out_vanilla":
            out = models.unet(*args, None)
        elif k.startswith("unet.out_scale_"):
            out = models.unet(*args, control, float(k.removeprefix("unet.out_scale_")))
        elif k.startswith("wrapper.out_scale_"):  # control encoder + UNet in one call
            feats = models.control(g["inputs.hint"], g["inputs.timesteps"], g["inputs.unet_x"], g["inputs.context"],
                                   g["inputs.y"])
            out = models.unet(*args, feats, float(k.removeprefix("wrapper.out_scale_")))
        else:
            pytest.fail(f"unknown golden tensor {k}")
        assert_parity(out, g[k], MODEL, k, family="supir.unet")
    # scale 0 is plain SDXL exactly
    assert torch.equal(models.unet(*args, control, 0.0), models.unet(*args, None))


@torch.no_grad()
def test_denoiser_snaps_sigma_and_scales(golden, models):
    g = golden
    table = ddpm_sigma_table()
    sigma = g["inputs.denoiser_sigma"]
    q, idx = quantize(sigma, table)
    ours = {"denoiser.sigma_table_1000": table, "denoiser.quantized_sigma": q, "denoiser.timestep_idx": idx}
    for k in keys(g, "denoiser.out_scale_"):
        ours[k] = denoise(models.unet, models.control, table, g["inputs.denoiser_x"], sigma, g["inputs.context"],
                          g["inputs.y"], g["inputs.hint"], float(k.removeprefix("denoiser.out_scale_")))
    for k in keys(g, "denoiser."):
        assert k in ours, f"unknown golden tensor {k}"
        assert_parity(ours[k], g[k], MODEL, k, family="supir.denoiser")


@torch.no_grad()
def test_vae_denoise_encoder_encoder_and_decoder(golden, models):
    g, m = golden, models
    x = g["inputs.image_64"]
    s = Settings()
    ours = {}
    for name, enc in (("denoise", m.denoise_encoder), ("encoder", m.vae.encoder)):
        raw = enc(x)
        moments = m.vae.quant_conv(raw)
        ours["vae.denoise_encoder_out" if name == "denoise" else "vae.encoder_out"] = raw
        ours[f"vae.{name}_moments"], ours[f"vae.{name}_mode"] = moments, moments.chunk(2, dim=1)[0]
    ours["vae.denoise_z_scaled"] = encode_lq(m, x, s)  # SUPIR's control latent, through the stage's path
    ours["vae.decoded"] = decode(m, g["inputs.decoder_z_scaled"], s)
    for k in keys(g, "vae."):
        assert k in ours, f"unknown golden tensor {k}"
        assert_parity(ours[k], g[k], MODEL, k, family="supir.vae")


def test_colour_fix(golden):
    g = golden
    for k in keys(g, "colorfix."):
        fn = {"colorfix.wavelet": colorfix.wavelet, "colorfix.adain": colorfix.adain}.get(k)
        assert fn is not None, f"unknown golden tensor {k}"
        assert_parity(fn(g["inputs.colorfix_content"], g["inputs.colorfix_style"]), g[k], MODEL, k, family="supir.colorfix")


def _edm_params(spec: dict) -> tuple[edm_euler.EdmParams, int]:
    p, c = spec["params"], spec["call"]
    guider = p["guider_config"]["params"]
    return edm_euler.EdmParams(
        s_churn=p["s_churn"], s_noise=p["s_noise"], s_tmin=p.get("s_tmin", 0.0), s_tmax=p.get("s_tmax", float("inf")),
        cfg_start=guider["scale"], cfg_end=guider.get("scale_min", guider["scale"]),
        control_start=c.get("control_scale_start", 0.0), control_end=c.get("control_scale", 1.0),
        linear_control=c.get("use_linear_control_scale", False), restore_cfg=p["restore_cfg"],
        restore_s_tmin=p.get("restore_cfg_s_tmin", 0.05)), p["num_steps"]


def _sampler_run(run: str, fx, g, models, sigma_shift: int | None = None) -> dict[str, object]:
    """Our EDM sampler on a golden run's inputs and recorded noise: {golden key: our tensor}.
    ``sigma_shift`` moves the schedule's second sigma by that many steps of the 1000-step DDPM table
    (the negative control)."""
    names = keys(g, run + ".")
    spec = run_calls(fx)[run]
    params, steps = _edm_params(spec)
    i = {k.removeprefix(f"{run}.in."): g[k] for k in names if k.startswith(f"{run}.in.")}
    table = ddpm_sigma_table()
    model = CfgDenoiser(models.unet, models.control, table, TextCond(i["c_crossattn"], i["c_vector"]),
                        TextCond(i["uc_crossattn"], i["uc_vector"]), i["control_z_lq"])
    noise = RecordedNoise({"churn": [g[f"{run}.noise.{j}"] for j in range(len(keys(g, f"{run}.noise.")))]})
    tile = spec["params"].get("tile_size")
    tiles = LatentTiles.plan(*i["x_T"].shape[-2:], tile=tile, stride=spec["params"]["tile_stride"]) if tile else None
    records: list[dict] = []
    sigmas = legacy_sigmas(steps)
    if sigma_shift:
        _, idx = quantize(sigmas[1:2], table)
        sigmas = sigmas.clone()
        sigmas[1] = table[int(idx) + sigma_shift]
    out = edm_euler.sample(model, i["x_T"].clone(), sigmas, params, noise=noise, x_center=i.get("x_center"),
                           tiles=tiles, tile_batch=1, parity_record=records.append)
    steps_rec = {r["step"]: r for r in records if r["tile"] is None}
    full_rec = {r["step"]: r for r in records if r["tile"] == "full"}
    tile_rec = [r for r in records if isinstance(r["tile"], list)]
    ours: dict[str, object] = {f"{run}.out.x0": out, f"{run}.sigmas": sigmas}
    if tiles is not None:
        ours[f"{run}.tile_coords"] = torch.tensor(tiles.windows)
        ours[f"{run}.tile_weights"] = tiles.weights.float().expand(g[f"{run}.tile_weights"].shape)
        for st, r in full_rec.items():
            ours[f"{run}.step.{st}.x_full_in"] = r["x_full_in"]
    for prefix, recs in ((f"{run}.step.", steps_rec), (f"{run}.tilestep.", dict(enumerate(tile_rec)))):
        for idx, r in recs.items():
            for field, v in r.items():
                ours[f"{prefix}{idx}.{field}"] = v
    return ours


@pytest.mark.parametrize("run", ["edm_det", "edm_churn", "edm_tiled"])
@torch.no_grad()
def test_sampler_trajectory(run, fx, golden, models):
    g = golden
    names = keys(g, run + ".")
    if not names:
        pytest.skip(f"this fixture set has no '{run}' run")
    ours = _sampler_run(run, fx, g, models)
    for k in names:
        if k.startswith((f"{run}.in.", f"{run}.noise.")):
            continue
        assert k in ours, f"unknown golden tensor {k}"
        assert_parity(ours[k], g[k], RECORDED_RUN, k, family="supir.edm")


def _e2e_run(fx, g, models) -> dict[str, object]:
    """SUPIR's whole restore (batchify_sample) on the golden inputs and recorded draws."""
    call = run_calls(fx)["e2e"]["call"]
    edm = edm_euler.EdmParams(
        s_churn=call["s_churn"], s_noise=call["s_noise"],
        cfg_start=call["cfg_scale_start"] if call.get("use_linear_CFG") else call["cfg_scale"], cfg_end=call["cfg_scale"],
        control_start=call.get("control_scale_start", 0.0), control_end=call["control_scale"],
        linear_control=call.get("use_linear_control_scale", False), restore_cfg=call["restoration_scale"])
    fix = {"Wavelet": "wavelet", "AdaIn": "adain", "None": "none"}[call["color_fix_type"]]
    s = Settings(sampler="edm", steps=call["num_steps"], edm=edm, color_fix=fix)
    draws = [g[f"e2e.noise.{j}"] for j in range(len(keys(g, "e2e.noise.")))]  # posterior, x_T, churn...
    i = {k.removeprefix("e2e.in."): g[k] for k in keys(g, "e2e.in.")}
    records: list[dict] = []
    r = restore(models, i["lq_image"], TextCond(i["c_crossattn"], i["c_vector"]), TextCond(i["uc_crossattn"], i["uc_vector"]),
                s, RecordedNoise({"posterior": draws[:1], "x_T": draws[1:2], "churn": draws[2:]}), parity_record=records.append)
    z_stage1 = r.z_stage1 if r.z_stage1 is not None else encode_sample(models, r.x_stage1, s, RecordedNoise({"posterior": draws[:1]}))
    ours = {"e2e.z_lq": r.z_lq, "e2e.x_stage1": r.x_stage1, "e2e.z_stage1": z_stage1, "e2e.samples_latent": r.latent,
            "e2e.samples_decoded": r.decoded, "e2e.out.samples_colorfixed": r.image}
    for rec in records:
        ours[f"e2e.step.{rec['step']}.x_out"] = rec["x_out"]
    return ours


@torch.no_grad()
def test_end_to_end_batchify_sample(fx, golden, models):
    g = golden
    if not keys(g, "e2e."):
        pytest.skip("this fixture set has no e2e run")
    ours = _e2e_run(fx, g, models)
    for k in keys(g, "e2e."):
        if k.startswith(("e2e.in.", "e2e.noise.")):
            continue
        assert k in ours, f"unknown golden tensor {k}"
        assert_parity(ours[k], g[k], RECORDED_RUN, k, family="supir.e2e")


# ------------------------------------------------------------------------- negative controls
# The same bound must reject a result from a model with one weight tensor moved by 1e-3 relative
# (or a schedule with one sigma moved by one step of the DDPM table): a tolerance that cannot fail
# is a defect.


@torch.no_grad()
def test_negative_control_control_encoder(golden, models):
    g = golden
    with perturbed(models.control.conv_in.weight):
        feats = models.control(g["inputs.hint"], g["inputs.timesteps"], g["inputs.unet_x"], g["inputs.context"], g["inputs.y"])
    assert_rejected(feats[-1], g[keys(g, "control.")[-1]], MODEL, "control features, conv_in moved 1e-3")


@torch.no_grad()
def test_negative_control_unet_and_denoiser(golden, models):
    g = golden
    args = (g["inputs.unet_x"], g["inputs.timesteps"], g["inputs.context"], g["inputs.y"])
    control = [g[f"control.{i}"] for i in range(len(keys(g, "control.")))]
    sigma = g["inputs.denoiser_sigma"]
    with perturbed(models.unet.unet.conv_out.weight):
        out = models.unet(*args, control, 1.0)
        den = denoise(models.unet, models.control, ddpm_sigma_table(), g["inputs.denoiser_x"], sigma, g["inputs.context"],
                      g["inputs.y"], g["inputs.hint"], 0.9)
    assert_rejected(out, g["unet.out_scale_1.0"], MODEL, "UNet, conv_out moved 1e-3")
    assert_rejected(den, g["denoiser.out_scale_0.9"], MODEL, "denoiser, conv_out moved 1e-3")


@torch.no_grad()
def test_negative_control_vae(golden, models):
    g, m = golden, models
    with perturbed(m.denoise_encoder.conv_out.weight):
        z = encode_lq(m, g["inputs.image_64"], Settings())
    with perturbed(m.vae.decoder.conv_out.weight):
        x = decode(m, g["inputs.decoder_z_scaled"], Settings())
    assert_rejected(z, g["vae.denoise_z_scaled"], MODEL, "denoise encoder, conv_out moved 1e-3")
    assert_rejected(x, g["vae.decoded"], MODEL, "decoder, conv_out moved 1e-3")


def test_negative_control_colour_fix(golden):
    g = golden
    style = g["inputs.colorfix_style"] * (1 + 1e-3)  # no weights here: the style image moved 1e-3
    assert_rejected(colorfix.wavelet(g["inputs.colorfix_content"], style), g["colorfix.wavelet"], MODEL, "wavelet")
    assert_rejected(colorfix.adain(g["inputs.colorfix_content"], style), g["colorfix.adain"], MODEL, "adain")


@pytest.mark.parametrize("run", ["edm_det", "edm_churn", "edm_tiled"])
@torch.no_grad()
def test_negative_control_sampler_one_sigma_one_step_off(run, fx, golden, models):
    if not keys(golden, run + "."):
        pytest.skip(f"this fixture set has no '{run}' run")
    ours = _sampler_run(run, fx, golden, models, sigma_shift=1)
    assert_rejected(ours[f"{run}.out.x0"], golden[f"{run}.out.x0"], RECORDED_RUN, f"{run} with sigma 1 one table step off")


@torch.no_grad()
def test_negative_control_end_to_end(fx, golden, models):
    if not keys(golden, "e2e."):
        pytest.skip("this fixture set has no e2e run")
    with perturbed(models.unet.unet.conv_out.weight):
        ours = _e2e_run(fx, golden, models)
    assert_rejected(ours["e2e.out.samples_colorfixed"], golden["e2e.out.samples_colorfixed"], RECORDED_RUN,
                    "e2e, UNet conv_out moved 1e-3")
