"""The tiled VAE keeps the untiled pass's GroupNorm statistics (full resolution, summed over every tile).

On a textured image through the tiny SDXL VAE and SUPIR's denoise encoder: the tiled result's error against
the untiled pass must be within 1.2x of the error that remains when every GroupNorm is handed the exact
statistics recorded from the untiled pass (what tiling cannot remove: borders and the mid block's
attention seeing one tile), and no channel's mean may move by more than 0.5/255 of the image range.
Negative controls: per-tile statistics (diffusers' enable_tiling) and statistics from a downscaled copy
(the previous implementation) must fail the same bound.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pipeline
from pipeline import images
from pipeline.models.sdxl import vae_tiled as V
from pipeline.models.supir.pipeline import load_models

SIZE, TILE = 192, 96  # px: 2 x 2 tiles with 32 px of context (encoders), 12 latent px tiles + 11 (decoder)
RATIO, MEAN_SHIFT = 1.2, 0.5 / 255


@pytest.fixture(scope="module")
def vae_models(tiny_models):
    return load_models(tiny_models / "checkpoints/sd_xl_base_1.0_tiny-random.safetensors",
                       tiny_models / "checkpoints/SUPIR-v0Q_tiny-random.ckpt", torch.float32, torch.float32,
                       text_encoders=False)


@pytest.fixture(scope="module")
def textured(portrait):
    """The portrait with pixel-level noise on top: texture at every scale, not a smooth image."""
    x = images.to_tensor(images.resize_rgb(portrait.rgb, (SIZE, SIZE))) * 2 - 1
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 0.5
    return (x + 0.6 * noise).clamp(-1, 1)


def _recording(into: list):
    def combine(gn, parts):
        stats = V.whole_image(gn, parts)
        into.append(stats[0])
        return stats
    return combine


def _replaying(stats: list):
    it = iter(stats)
    return lambda gn, parts: [next(it)] * len(parts)


def _per_tile(gn, parts):
    return [(mean, m2 / n) for n, mean, m2 in parts]


def _run(steps, x, cores, scale, channels, combine=V.whole_image):
    return V.run_synced(steps, x, cores, scale=scale, out_channels=channels, combine=combine)


def _stats_of(steps, x, scale, channels) -> list:
    """Every GroupNorm's statistics of the untiled pass of ``x`` (one tile = the whole image)."""
    h, w = x.shape[-2:]
    stats: list = []
    _run(steps, x, [V.Core(0, h, 0, w, 0, h, 0, w)], scale, channels, _recording(stats))
    return stats


def _rms(a, b) -> float:
    return ((a - b) ** 2).mean().sqrt().item()


def _check(name, untiled, to_image, results, *, fail: tuple[str, ...]) -> None:
    """``results``: {"synced": ..., "exact": ..., controls...}; ``to_image`` maps an output to [-1, 1] pixels."""
    ref_img = to_image(untiled)
    floor = _rms(results["exact"], untiled)
    assert floor > 0
    for kind, out in results.items():
        ratio = _rms(out, untiled) / floor
        shift = ((to_image(out) - ref_img).mean(dim=(0, 2, 3)).abs() / 2).max().item()  # [0, 1] units
        ok = ratio <= RATIO and shift <= MEAN_SHIFT
        if kind in fail:
            assert not ok, f"{name}: {kind} statistics passed the bound (ratio {ratio:.2f}, shift {shift * 255:.2f}/255)"
        else:
            assert ok, f"{name}: {kind} statistics: error {ratio:.3f}x the exact-statistics floor, mean shift {shift * 255:.3f}/255"


@torch.no_grad()
def test_encoders_tiled_keep_the_untiled_statistics(vae_models, textured):
    m = vae_models
    dec = m.vae.decoder

    def to_image(moments):  # the latent's effect on the picture: decoded untiled
        return dec(m.vae.post_quant_conv(m.vae.quant_conv(moments).chunk(2, dim=1)[0]))

    cores = V.plan_cores(SIZE, SIZE, TILE, V.ENCODER_PAD, 8)
    assert len(cores) == 4
    for name, enc in (("denoise encoder", m.denoise_encoder), ("SDXL encoder", m.vae.encoder)):
        def steps(t, keep, back, enc=enc):
            return V.encoder_steps(enc, t, keep, back)

        untiled = enc(textured)
        results = {"synced": _run(steps, textured, cores, 1 / 8, 8),
                   "exact": _run(steps, textured, cores, 1 / 8, 8, _replaying(_stats_of(steps, textured, 1 / 8, 8)))}
        if enc is m.denoise_encoder:  # the controls once: both encoders share the code path
            results["per-tile"] = _run(steps, textured, cores, 1 / 8, 8, _per_tile)
        _check(name, untiled, to_image, results, fail=("per-tile",))


@torch.no_grad()
def test_decoder_tiled_keeps_the_untiled_statistics(vae_models, textured):
    m = vae_models
    z = m.vae.post_quant_conv(m.vae.quant_conv(m.vae.encoder(textured)).chunk(2, dim=1)[0])  # a textured latent
    dec = m.vae.decoder

    def steps(t, keep, back):
        return V.decoder_steps(dec, t, keep, back)

    untiled = dec(z)
    cores = V.plan_cores(*z.shape[-2:], TILE // 8, V.DECODER_PAD, 1)
    small = F.interpolate(z, scale_factor=0.5, mode="area")  # the old "fast" statistics
    results = {"synced": _run(steps, z, cores, 8, 3),
               "exact": _run(steps, z, cores, 8, 3, _replaying(_stats_of(steps, z, 8, 3))),
               "per-tile": _run(steps, z, cores, 8, 3, _per_tile),
               "downscaled": _run(steps, z, cores, 8, 3, _replaying(_stats_of(steps, small, 8, 3)))}
    _check("decoder", untiled, lambda img: img, results, fail=("per-tile", "downscaled"))


@torch.no_grad()
def test_one_tile_through_the_lockstep_path_is_the_plain_module(vae_models, textured):
    m = vae_models
    cores = [V.Core(0, SIZE, 0, SIZE, 0, SIZE, 0, SIZE)]
    ours = _run(lambda t, k, b: V.encoder_steps(m.denoise_encoder, t, k, b), textured, cores, 1 / 8, 8)
    plain = m.denoise_encoder(textured)
    assert (ours - plain).abs().max() <= 1e-5 * plain.abs().max()  # only the GroupNorm's own rounding


def test_auto_tiles_only_when_the_untiled_pass_does_not_fit_and_an_explicit_tile_is_honoured():
    need = V.untiled_bytes((128, 256, 512, 512), 2048, 2048, torch.bfloat16, decoder=True)
    assert 9 << 30 < need < 11 << 30  # the measured 2048² FLUX-VAE peak was 9.7 GiB
    assert V.choose_tiling(V.AUTO, need, budget=80 << 30) == (0, False)  # fits: untiled, as the workflow
    assert V.choose_tiling(V.AUTO, need, budget=8 << 30) == (V.AUTO_TILE, False)
    assert V.choose_tiling(V.AUTO, need, budget=4 << 30) == (V.AUTO_TILE, True)  # held tiles wait in RAM
    assert V.choose_tiling(768, need, budget=80 << 30) == (768, False)  # explicit: always
    assert V.choose_tiling(0, need, budget=1 << 30) == (0, False)  # never


@torch.no_grad()
def test_tiled_decode_parks_on_the_cpu_and_stops_on_the_token(vae_models):
    vae = vae_models.vae
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    here = V.decode(vae, z, tile=64)
    parked = V.run_synced(lambda t, k, b: V.decoder_steps(vae.decoder, t, k, b), vae.post_quant_conv(z),
                          V.plan_cores(16, 16, 8, V.DECODER_PAD, 1), scale=8, out_channels=3,
                          park=torch.device("cpu"))
    assert torch.equal(here, parked)
    token = pipeline.CancelToken()
    token.cancel()
    with pytest.raises(pipeline.Cancelled):
        V.decode(vae, z, tile=64, cancel=token)
