"""The one out-of-memory policy (pipeline/memory_policy.py), run by ``pipeline.run`` for every stage.

A CPU cannot run out of device memory, so these tests raise ``torch.OutOfMemoryError`` from inside the
real stages (SUPIR's denoiser, FLUX's transformer call and autoencoder) under conditions on the settings
in use; the stages, the ladder and ``pipeline.run`` are the real ones. Each test asserts which settings
every retry used and that the final result is what a direct run with those settings gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline
from pipeline import images
from pipeline.config import Config
from pipeline.memory_policy import next_settings
from pipeline.models.flux import engine
from pipeline.models.supir import denoiser
from pipeline.stages import flux_refine, supir

from ._flux_helpers import flux_stages, write_preset

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the test)"
SUPIR_FAST = {"skin_detail.enabled": "false", "supir.steps": "2", "supir.min_size": "192", "supir.tile": "16",
              "supir.tile_stride": "8", "supir.previews": "0"}


def _ladder(knobs, params, used):
    """Every step of the ladder from ``params``, assuming each retry uses what it was given."""
    changes = []
    while (step := next_settings(knobs, params, used)) is not None:
        params, change = step
        changes.append(change)
        used = {**used, **{k: v for k, v in params.items() if k in used and k != "phase"}}
    return changes


def test_supir_ladder_in_sampling_and_in_the_vae():
    sampling = {"memory": "resident", "tile": 0, "tile_batch": 1, "phase": "sampling"}
    # untiled sampling: nothing to batch; offload, stream, then tiles (auto -> 128 latent -> 64 -> 32)
    assert _ladder(supir.MEMORY_KNOBS, {}, sampling) == [
        "model offload", "sequential offload", "tile = 128", "tile = 64", "tile = 32"]
    tiled = {**sampling, "tile": 128, "tile_batch": 5}
    assert _ladder(supir.MEMORY_KNOBS, {}, tiled)[:4] == [
        "2 tile(s) per model call", "1 tile(s) per model call", "model offload", "sequential offload"]
    vae = {"memory": "resident", "phase": "decode"}  # VAE tiles first: cheap, unlike streaming weights
    assert _ladder(supir.MEMORY_KNOBS, {}, vae) == [
        "vae_tile = 512", "vae_tile = 256", "model offload", "sequential offload"]
    assert _ladder(supir.MEMORY_KNOBS, {"tile": 0, "vae_tile": 0}, {**sampling}) == [  # 0 = never: respected
        "model offload", "sequential offload"]


def test_flux_ladder_in_sampling_and_in_the_vae():
    used = {"memory": "resident", "tile_batch": 4, "vae_tiling": "off", "vae_tile": 1024, "tile": 1024}
    assert _ladder(flux_refine.MEMORY_KNOBS, {}, {**used, "phase": "sampling"}) == [
        "2 tile(s) per model call", "1 tile(s) per model call", "model offload", "sequential offload",
        "tile = 512"]
    assert _ladder(flux_refine.MEMORY_KNOBS, {}, {**used, "phase": "vae"}) == [
        "vae_tiling = on", "model offload", "sequential offload", "vae_tile = 512", "vae_tile = 256",
        "tile = 512"]


# --------------------------------------------------------------------------------------- SUPIR


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return images.from_array((rng.random((96, 96, 3)) * 255).astype(np.uint8))


def _supir(tiny_models, image, overrides, progress=None, models=None):
    recipe = pipeline.build("supir", {**SUPIR_FAST, **overrides}, scale=2.0)
    return pipeline.run(recipe, image, seed=3, config=Config(comfy_models=(tiny_models,)), progress=progress,
                        models=models if models is not None else pipeline.ModelCache(), device="cpu")


def test_supir_short_of_memory_retries_with_fewer_tiles_per_call(tiny_models, small, monkeypatch):
    real, calls = denoiser.denoise, []

    def denoise(unet, control, table, x, *args):
        calls.append(x.shape[0] // 2)  # tiles in this call (rows are [uncond, cond] pairs)
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError(OOM)
        return real(unet, control, table, x, *args)

    monkeypatch.setattr(denoiser, "denoise", denoise)
    events = []
    out = _supir(tiny_models, small, {"supir.tile_batch": "4"}, progress=events.append)
    logged = [e.message for e in events if e.stage == "supir" and e.message.startswith(("SUPIR at", "supir: out"))]
    assert logged == [
        "SUPIR at 192x192 px, resident memory, float32, sampling 16-latent tiles, up to 4 per call",
        "supir: out of device memory, trying again with 2 tile(s) per model call",
        "SUPIR at 192x192 px, resident memory, float32, sampling 16-latent tiles, up to 2 per call",
        "supir: out of device memory, trying again with 1 tile(s) per model call",
        "SUPIR at 192x192 px, resident memory, float32, sampling 16-latent tiles, up to 1 per call"]
    assert calls[:2] == [4, 2] and set(calls[2:]) == {1}  # 2 x 2 tiles: 4, then 2 + 2 (failed), then 1s
    assert any("trying again with 1 tile" in m for m in out.messages)
    monkeypatch.setattr(denoiser, "denoise", real)
    direct = _supir(tiny_models, small, {"supir.tile_batch": "1"})
    assert np.array_equal(out.image.rgb, direct.image.rgb)


def test_supir_out_of_memory_everywhere_climbs_the_whole_ladder_then_fails_clearly(tiny_models, small,
                                                                                    monkeypatch):
    def denoise(*args):
        raise torch.OutOfMemoryError(OOM)

    monkeypatch.setattr(denoiser, "denoise", denoise)
    cache = pipeline.ModelCache()
    cache.get("left over from another job", lambda: torch.nn.Linear(4, 4))
    events = []
    with pytest.raises(pipeline.OutOfMemory) as e:
        _supir(tiny_models, small, {"supir.tile_batch": "2"}, progress=events.append, models=cache)
    modes = [m.split(", ")[1] for m in (e.message for e in events) if m.startswith("SUPIR at")]
    assert modes == ["resident memory", "resident memory", "resident memory", "model_offload memory",
                     "sequential memory"]
    assert "left over from another job" not in cache  # unloaded first
    text = str(e.value)
    assert ("supir ran out of device memory (CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the "
            "test)) even after unloading the other models, 1 tile(s) per model call, model offload and "
            "sequential offload") in text
    assert "--" not in text and e.value.code == "out_of_memory"


# ---------------------------------------------------------------------------------------- FLUX


def _flux(tiny_models, portrait, tile_batch, progress=None):
    write_preset("flux-oom", flux_stages(steps=1, tile=256, stage_3=False, extra=f"tile_batch = {tile_batch}"))
    return pipeline.run(pipeline.build("flux-oom"), images.resize(portrait, (256, 384)), seed=1,
                        progress=progress, config=Config(comfy_models=(tiny_models,)), device="cpu")


def test_flux_short_of_memory_halves_the_tiles_per_call(tiny_models, portrait, monkeypatch):
    real, calls = engine.Velocity._forward, []

    def forward(self, x, sigma):
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError(OOM)
        return real(self, x, sigma)

    monkeypatch.setattr(engine.Velocity, "_forward", forward)
    events = []
    out = _flux(tiny_models, portrait, 4, progress=events.append)
    assert calls == [2, 2, 1, 1]  # 2 tiles: batch 4 (2 at once), batch 2 (2 at once), batch 1
    assert [e.message for e in events if e.message.startswith("refine: out")] == [
        "refine: out of device memory, trying again with 2 tile(s) per model call",
        "refine: out of device memory, trying again with 1 tile(s) per model call"]
    monkeypatch.setattr(engine.Velocity, "_forward", real)
    assert np.array_equal(out.image.rgb, _flux(tiny_models, portrait, 1).image.rgb)


def test_flux_autoencoder_short_of_memory_tiles_first(tiny_models, portrait, monkeypatch):
    real, tiling = engine.LatentCodec._ready, []

    def ready(self):
        tiling.append(self.tiling)
        if not self.tiling:
            raise torch.OutOfMemoryError(OOM)
        return real(self)

    monkeypatch.setattr(engine.LatentCodec, "_ready", ready)
    events = []
    out = _flux(tiny_models, portrait, 4, progress=events.append)
    assert tiling[0] is False and all(tiling[1:])  # the retry encoded and decoded in tiles
    assert [e.message for e in events if e.message.startswith("refine: out")] == [
        "refine: out of device memory, trying again with vae_tiling = on"]
    assert out.image.rgb.shape == (256, 384, 3)
