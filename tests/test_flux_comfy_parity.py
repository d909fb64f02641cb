"""ComfyUI parity details of stages 2-3: the beta and sgm_uniform schedulers derived independently from
ComfyUI's definitions, T5 prompts padded to at least 256 tokens and never cut, and the float32
timestep/guidance embedding."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from pipeline.models.flux import text as ft
from pipeline.models.flux import tiny as tiny_flux
from pipeline.models.flux.embeddings import exact_time_embedding
from pipeline.samplers.flow_match import comfy_sigmas

from ._parity import DEQUANT, assert_parity, assert_rejected

F32 = np.float32
ULPS = 2.5e-7  # float32 rounding (2 ulp): torch.linspace's last bit depends on the CPU's FMA use


def comfy_table(mu: float = 1.15) -> np.ndarray:
    """ModelSamplingFlux.sigmas as ComfyUI computes them in float32: t = k/10000 and
    e^mu / (e^mu + (1/t - 1)), where torch's ``scalar / tensor`` is ``tensor.reciprocal() * scalar``."""
    t = np.arange(1, 10001).astype(F32) / F32(10000)
    e = F32(math.exp(mu))
    return (F32(1) / (e + ((F32(1) / t) * F32(1) - F32(1)))) * e


def beta_reference(n: int) -> list[int]:
    """ComfyUI's beta_scheduler table indices: rint(ppf(1 - i/n; 0.6, 0.6) * 9999), repeats dropped,
    with the quantile solved by mpmath at 40 digits (independent of the float64 one under test)."""
    mpmath.mp.dps = 40
    a = mpmath.mpf("0.6")

    def ppf(q):
        if q >= 1:
            return mpmath.mpf(1)
        return mpmath.findroot(lambda x: mpmath.betainc(a, a, 0, x, regularized=True) - q,
                               (mpmath.mpf("1e-30"), 1 - mpmath.mpf("1e-30")), solver="anderson")

    picks = [int(mpmath.nint(ppf(1 - mpmath.mpf(i) / n) * 9999)) for i in range(n)]
    return [p for i, p in enumerate(picks) if i == 0 or p != picks[i - 1]]


@pytest.mark.parity
@pytest.mark.parametrize("denoise", [0.30, 0.45])
def test_beta_scheduler_matches_comfyui_exactly(denoise):
    n = int(20 / denoise)  # KSampler.set_steps: a 66 / 44-step schedule, the last 21 sigmas kept
    table = comfy_table()
    want = torch.tensor([*table[beta_reference(n)], 0.0], dtype=torch.float32)[-21:]
    got = comfy_sigmas(20, denoise, scheduler="beta")
    assert len(got) == 21
    assert_parity(got, want, DEQUANT, f"beta 20 x {denoise}", family="flux.schedule")
    shifted = torch.tensor([*table[[min(p + 1, 9999) for p in beta_reference(n)]], 0.0])[-21:]
    assert_rejected(shifted, want, DEQUANT, "beta picks one table entry off")


@pytest.mark.parity
@pytest.mark.parametrize("denoise", [0.30, 0.45])
def test_sgm_uniform_matches_comfyui_within_float32_rounding(denoise):
    n = int(20 / denoise)
    table = comfy_table().astype(np.float64)
    # normal_scheduler(sgm=True): linspace(sigma_max, sigma_min, n + 1)[:-1] over timesteps (= sigmas for
    # FLUX), each mapped through sigma(t), then 0; here in float64
    start, end = table[-1], table[0]
    ts = [start + k * (end - start) / n for k in range(n)]
    want = torch.tensor([math.exp(1.15) / (math.exp(1.15) + (1 / t - 1)) for t in ts] + [0.0], dtype=torch.float64)
    got = comfy_sigmas(20, denoise, scheduler="sgm_uniform")
    assert_parity(got, want[-21:], ULPS, f"sgm_uniform 20 x {denoise}", family="flux.schedule")
    # negative control: "normal" spaces n points ending at sigma_min, one step off sgm_uniform's grid
    assert_rejected(comfy_sigmas(20, denoise, scheduler="normal"), want[-21:], ULPS, "normal instead of sgm")


# ------------------------------------------------------------------------------------------ T5


def test_t5_prompt_is_padded_to_256_and_never_cut():
    ttok = tiny_flux.t5_tokenizer()
    short = ft.t5_ids(ttok, "pores, freckles", 256)
    n = len(ttok("pores, freckles").input_ids)
    assert short.shape == (1, 256) and short[0, n - 1] == ttok.eos_token_id and short[0, n:].eq(ttok.pad_token_id).all()
    # the same ids diffusers' padding to a fixed 256 gives for a short prompt
    hf = ttok("pores, freckles", padding="max_length", max_length=256, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(short, hf)
    long = " ".join(["skin"] * 200)  # ~1000 tokens with the tiny character vocabulary
    ids = ft.t5_ids(ttok, long, 256)
    assert ids.shape[1] == len(ttok(long).input_ids) > 512 and ids[0, -1] == ttok.eos_token_id
    assert ft.t5_ids(ttok, "pores", 512).shape == (1, 512)  # diffusers' FluxPipeline length stays an option


# ------------------------------------------------------------------------------ time embedding


def comfy_timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """comfy/ldm/flux/layers.py timestep_embedding(t, 256, time_factor=1000.0), float32."""
    t = 1000.0 * t.float()
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@pytest.mark.parity
def test_timestep_and_guidance_embed_from_float32_in_a_bf16_model():
    model = tiny_flux.tiny_parts()[0].to(torch.bfloat16)
    seen: dict[str, torch.Tensor] = {}
    emb = model.time_text_embed
    emb.timestep_embedder.register_forward_pre_hook(lambda m, a: seen.__setitem__("t", a[0]))
    emb.guidance_embedder.register_forward_pre_hook(lambda m, a: seen.__setitem__("g", a[0]))
    t, g = torch.tensor([0.5787, 0.1234]), torch.tensor([3.5, 2.7])

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            model(hidden_states=torch.zeros(2, 4, 64, dtype=torch.bfloat16),
                  encoder_hidden_states=torch.zeros(2, 3, 32, dtype=torch.bfloat16),
                  pooled_projections=torch.zeros(2, 32, dtype=torch.bfloat16), timestep=t, guidance=g,
                  img_ids=torch.zeros(4, 3), txt_ids=torch.zeros(3, 3), return_dict=False)
        return seen["t"].float(), seen["g"].float()

    want_t, want_g = (comfy_timestep_embedding(x).to(torch.bfloat16).float() for x in (t, g))
    rounded = forward()  # diffusers: t.to(bf16) * 1000 (578.7 -> 580) before the sinusoids
    exact_time_embedding(model)
    got_t, got_g = forward()
    assert_parity(got_t, want_t, DEQUANT, "timestep embedding", family="flux.time")
    assert_parity(got_g, want_g, DEQUANT, "guidance embedding", family="flux.time")
    assert_rejected(rounded[0], want_t, DEQUANT, "diffusers' bf16-rounded timestep")
    exact_time_embedding(model, on=False)
    assert torch.equal(forward()[0], rounded[0])
