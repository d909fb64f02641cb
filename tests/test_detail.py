"""The detail layer (pipeline/detail.py): its math, ``run(content="detail")`` in both output modes,
`dermis upscale --detail` here and through a daemon. The editors' own Grain Merge is tested in the real
editors (test_krita_editor.py, test_gimp_editor.py).

The composite checks use an independent Gaussian (numpy, not OpenCV) and Grain Merge written out
(base + layer - 0.5), so they do not reuse the code under test."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from daemon.cli import main
from pipeline import images
from pipeline.detail import detail_layer
from pipeline.errors import InvalidParameter

from ._daemon_helpers import client, request, result_array
from ._detail_checks import blur

SEED = 7


def grain_merge(base: np.ndarray, layer: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    return base + (np.clip(base + layer - 0.5, 0, 1) - base) * opacity


def test_detail_is_the_changed_high_frequencies_around_mid_grey():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80] / 64.0
    source = np.stack([0.3 + 0.3 * yy, 0.5 + 0.1 * xx, 0.4 + 0 * xx], axis=-1).astype(np.float32)
    texture = (rng.normal(0, 0.02, source.shape)).astype(np.float32)
    result = source + texture + 0.1 * xx[..., None].astype(np.float32)  # texture plus a colour shift
    d = detail_layer(result, source, 8.0)
    assert d.dtype == np.float32 and d.shape == source.shape
    # Grain Merge over the source: the source's low frequencies + the result's high frequencies
    want = blur(source) + (result - blur(result))
    got = grain_merge(source, d)
    assert np.abs(got - want).max() < 2e-3  # OpenCV's float32 blur vs this float64 one
    # a slow colour shift alone stays out of the layer (mid-grey away from the mirrored edges)
    shifted = detail_layer(source + 0.1 * xx[..., None].astype(np.float32), source, 8.0)
    assert np.abs(shifted - 0.5)[16:-16, 16:-16].max() < 1e-3
    # unchanged pixels give exactly mid-grey, and nothing happens under Grain Merge
    assert np.array_equal(detail_layer(source, source), np.full_like(source, 0.5))


@pytest.mark.parametrize("sigma", [0, -1, float("nan"), float("inf"), 1e9, "wide"])
def test_bad_sigma_is_a_clear_error(sigma):
    x = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(InvalidParameter, match="blur radius"):
        detail_layer(x, x, sigma)


def _portrait_crop(portrait) -> np.ndarray:
    return images.to_array(portrait, bit_depth=8, mode="RGBA")[150:310, 160:352].copy()


def test_run_detail_layer_grain_merged_over_the_source_matches_the_normal_result(portrait):
    """The issue's three checks on the library's own output, with lite at 1x; the editor tests repeat
    them on what Krita and GIMP composite."""
    arr = _portrait_crop(portrait)
    mask = np.zeros(arr.shape[:2], np.float32)
    mask[30:130, 50:140] = 1
    kw = dict(seed=SEED, mask=mask, output="layer")
    normal = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(arr), **kw)
    detail = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(arr), content="detail", **kw)
    assert detail.layer_name == f"Dermis detail (lite, {SEED})" and detail.content == "detail"
    assert detail.offset == normal.offset and detail.image.size == normal.image.size
    np.testing.assert_array_equal(detail.image.alpha, normal.image.alpha)  # same place, same feathered mask
    n = images.to_array(normal.image, bit_depth=8).astype(float) / 255
    d = images.to_array(detail.image, bit_depth=8).astype(float) / 255  # as an 8-bit layer holds it
    ox, oy = normal.offset
    h, w = n.shape[:2]
    src = arr[..., :3].astype(float) / 255
    under = src[oy:oy + h, ox:ox + w]
    a = d[..., 3:]

    def composite(layer_rgb, mode):
        out = src.copy()
        top = grain_merge(under, layer_rgb) if mode == "grain" else layer_rgb
        out[oy:oy + h, ox:ox + w] = under + (top - under) * a
        return out

    full = composite(d[..., :3], "grain")
    inside = (a[..., 0] == 1) & (under.min(-1) > 2 / 255) & (under.max(-1) < 253 / 255)
    assert inside.sum() > 800
    err = np.abs(full[oy:oy + h, ox:ox + w] - n[..., :3])[inside].max()
    assert err <= 2 / 255, err * 255
    blur_err = np.abs(blur(full) - blur(src)).max()
    assert blur_err <= 1 / 255, blur_err * 255
    # negative controls: the same layer in Normal mode fails both checks
    normal_mode = composite(d[..., :3], "normal")
    assert np.abs(normal_mode[oy:oy + h, ox:ox + w] - n[..., :3])[inside].max() > 20 / 255
    assert np.abs(blur(normal_mode) - blur(src)).max() > 20 / 255


def test_run_detail_in_full_mode_and_at_scale_2(portrait):
    arr = images.to_array(portrait, bit_depth=8)[:96, :128]
    res = pipeline.run(pipeline.build("lite"), images.from_array(arr), seed=SEED, content="detail",
                       detail_sigma=4.0)
    assert res.image.size == (256, 192)
    up = images.resize_rgb(images.from_array(arr).rgb, (192, 256))
    normal = pipeline.run(pipeline.build("lite"), images.from_array(arr), seed=SEED).image.rgb
    merged = np.clip(up + res.image.rgb - 0.5, 0, 1)
    want = blur(up, 4.0) + normal - blur(normal, 4.0)
    assert np.abs(merged - want)[8:-8, 8:-8].max() < 2e-3


def test_cli_detail_writes_the_detail_layer(portrait_path, tmp_path, capsys):
    out = tmp_path / "detail.png"
    rc = main(["upscale", str(portrait_path), "-o", str(out), "--preset", "lite", "--scale", "1", "--seed",
               str(SEED), "--detail", "--quiet"])
    assert rc == 0
    said = capsys.readouterr().out
    assert "detail layer" in said and "Grain Merge" in said
    want = pipeline.run(pipeline.build("lite", scale=1.0), images.load(portrait_path), seed=SEED,
                        content="detail").image
    np.testing.assert_array_equal(images.to_array(images.load(out)), images.to_array(want))
    assert main(["upscale", str(portrait_path), "-o", str(tmp_path / "x.png"), "--preset", "lite", "--detail",
                 "--detail-sigma", "0", "--quiet"]) != 0
    assert "blur radius" in capsys.readouterr().err


def test_daemon_computes_the_detail_layer(daemon):
    arr = np.ascontiguousarray(np.random.default_rng(4).integers(0, 65536, (60, 80, 4), dtype=np.uint16))
    with client(daemon) as c:
        res = c.run(request(arr, preset="lite", seed=SEED, scale=1.0, region=(10, 10, 40, 30), content="detail",
                            detail_sigma=3.0))
        info = c.info()
    want = pipeline.run(pipeline.build("lite", scale=1.0), images.from_array(arr), seed=SEED, device="cpu",
                        region=pipeline.Region(10, 10, 40, 30), output="layer", content="detail", detail_sigma=3.0)
    assert res.content == "detail" and res.layer_name == want.layer_name and res.bit_depth == 16
    assert (res.offset_x, res.offset_y) == want.offset
    np.testing.assert_array_equal(result_array(res), images.to_array(want.image))
    assert "detail-layer" in info.capabilities
