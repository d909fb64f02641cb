"""The spandrel upscale stage, through real model files and the real loader."""

import pickle

import numpy as np
import pytest
import torch

import pipeline
from pipeline.errors import Cancelled, WrongWeights
from pipeline.models.cache import ModelCache
from pipeline.models.upscale.tiny import compact_state_dict, esrgan_state_dict
from pipeline.run import CancelToken, StageContext
from pipeline.stages import make_params, upscale_model

from .conftest import rng_image


def make_ctx(seed=0, target=(64, 64), weights=None, cancel=None, models=None, events=None):
    def report(p):
        if events is not None:
            events.append((p.step, p.steps, p.message))

    return StageContext(
        stage_id="t", seed=seed, device=torch.device("cpu"), dtype=torch.float32,
        cancel=cancel or CancelToken(), models=models or ModelCache(), weights=weights or {},
        target_size=target, mask=None, locator=pipeline.WeightLocator(), on_progress=report,
    )


def _run(path, rgb, **params):
    p = make_params(upscale_model, {"model": str(path), **params}, "u")
    return upscale_model.run(rgb, p, make_ctx(weights={str(path): path}))


def test_real_size_skin_detail_esrgan_loads_and_runs(tmp_path):
    # the real 1x-ITF-SkinDiffDetail-Lite-v1 shape: ESRGAN 32nf / 12nb, old key layout, .pth
    path = tmp_path / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
    sd = esrgan_state_dict(num_filters=32, num_blocks=12, scale=1)
    assert "model.1.sub.0.RDB1.conv1.0.weight" in sd and sd["model.0.weight"].shape[0] == 32
    torch.save(sd, path)
    rgb = rng_image(40, 52)
    out = _run(path, rgb, tile=32, overlap=8)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and not np.allclose(out, rgb)


def test_compact_4x_from_safetensors_and_basicsr_pth(tmp_path):
    from safetensors.torch import save_file

    sd = compact_state_dict(upscale=4)
    st, pth = tmp_path / "c.safetensors", tmp_path / "c.pth"
    save_file(sd, st)
    torch.save({"params_ema": sd}, pth)
    rgb = rng_image(30, 20)
    a, b = _run(st, rgb), _run(pth, rgb)
    assert a.shape == (120, 80, 3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("scale,tile,overlap", [(1, 64, 16), (1, 100, 40), (2, 48, 12)])
def test_identity_model_through_tiles_is_bit_exact(tmp_path, scale, tile, overlap):
    path = tmp_path / f"id{scale}.pth"
    torch.save(compact_state_dict(num_feat=4, num_conv=1, upscale=scale, identity=True), path)
    rgb = images_u8(173, 259)
    out = _run(path, rgb, tile=tile, overlap=overlap, batch=3)
    expect = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
    assert np.array_equal(out, expect)


def images_u8(h, w):
    return (np.random.default_rng(0).integers(0, 256, (h, w, 3)) / 255).astype(np.float32)


def test_cancel_between_tiles(tmp_path):
    path = tmp_path / "c.pth"
    torch.save(compact_state_dict(num_feat=4, num_conv=1, upscale=1), path)
    token = CancelToken()
    events = []

    class Stop(list):
        def append(self, e):
            super().append(e)
            token.cancel()

    p = make_params(upscale_model, {"model": str(path), "tile": 32, "overlap": 4, "batch": 1}, "u")
    ctx = make_ctx(weights={str(path): path}, cancel=token, events=Stop())
    with pytest.raises(Cancelled):
        upscale_model.run(rng_image(100, 100), p, ctx)
    assert not events


def test_model_is_loaded_once_per_cache(tmp_path):
    path = tmp_path / "c.pth"
    torch.save(compact_state_dict(num_feat=4, num_conv=1, upscale=1), path)
    cache = ModelCache()
    p = make_params(upscale_model, {"model": str(path)}, "u")
    for _ in range(2):
        upscale_model.run(rng_image(16, 16), p, make_ctx(weights={str(path): path}, models=cache))
    assert len(cache.entries()) == 1 and cache.entries()[0].size > 0


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "content,words",
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "cannot be read"),
        (lambda p: torch.save({"weird.key": torch.zeros(3)}, p), "spandrel recognises"),
        (lambda p: p.write_bytes(pickle.dumps(_Evil(), protocol=2)), "not loaded for safety"),
        (lambda p: torch.save([1, 2, 3], p), "not a dictionary"),
    ],
)
def test_wrong_weights_say_which_file_and_why(tmp_path, content, words):
    path = tmp_path / "bad.pth"
    content(path)
    with pytest.raises(WrongWeights) as e:
        _run(path, rng_image(16, 16))
    assert "bad.pth" in str(e.value) and words in str(e.value)


def test_skin_detail_found_in_a_comfy_models_folder(tiny_models, portrait):
    from dataclasses import replace

    from pipeline.recipes import StageSpec

    recipe = pipeline.build("lite", scale=1.0)
    recipe = replace(recipe, stages=(StageSpec("skin_detail", "upscale_model", params={"tile": 128}),))
    config = pipeline.load_config(comfy_models=[tiny_models])
    r = pipeline.run(recipe, portrait, seed=1, config=config, region=pipeline.Region(200, 100, 64, 64))
    assert r.timings["skin_detail"] > 0
    assert not np.array_equal(r.image.rgb, portrait.rgb)
