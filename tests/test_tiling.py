import math

import pytest
import torch

from pipeline.errors import InvalidParameter
from pipeline.tiling import Assembler, assemble, blend_weights, crop_tiles, plan_tiles


def _check_plan(plan, overlap):
    cover = torch.zeros(plan.height, plan.width, dtype=torch.int32)
    for t in plan.tiles:
        ys, xs = t.slices()
        assert t.y >= 0 and t.x >= 0 and t.y + t.h <= plan.height and t.x + t.w <= plan.width
        cover[ys, xs] += 1
    assert (cover > 0).all(), "every pixel is covered"
    for t in plan.tiles:
        for side in (t.top, t.bottom, t.left, t.right):
            assert side == 0 or side >= overlap


@pytest.mark.parametrize(
    "h,w,tile,overlap,multiple",
    [(1000, 1537, 512, 32, 1), (1000, 1537, 256, 64, 16), (2048, 2048, 1024, 128, 16),
     (600, 904, 256, 128, 16), (17, 2000, 512, 32, 1), (3000, 4096, 1024, 128, 64), (1, 1, 512, 32, 1)],
)
def test_plan_covers_every_pixel_with_overlap(h, w, tile, overlap, multiple):
    plan = plan_tiles(h, w, tile=tile, overlap=overlap, multiple=multiple)
    _check_plan(plan, overlap)
    if plan.rows > 1:
        assert plan.tile_h % multiple == 0
    if plan.cols > 1:
        assert plan.tile_w % multiple == 0
        assert all(t.x % multiple == 0 for t in plan.tiles if t.col < plan.cols - 1)


def test_2048_square_is_2x2_tiles_of_1088():
    # the reference workflow: a 2048² frame in 2×2 tiles near 1024 with 128 px overlap (ComfyUI: 1088²)
    plan = plan_tiles(2048, 2048, tile=1024, overlap=128, multiple=16)
    assert (plan.rows, plan.cols, plan.tile_h, plan.tile_w) == (2, 2, 1088, 1088)
    assert plan.tiles[1].left == 128 and plan.tiles[2].top == 128


def test_tiles_are_as_close_to_target_as_possible():
    for length in range(700, 5000, 97):
        plan = plan_tiles(64, length, tile=1024, overlap=128, multiple=16)
        best = plan.tile_w
        for n in range(1, 12):
            alt = plan_tiles(64, length, tile=1024, overlap=128, multiple=16, cols=n)
            if alt.cols == n:
                assert abs(best - 1024) <= abs(alt.tile_w - 1024)


def test_explicit_rows_and_cols():
    plan = plan_tiles(2000, 3000, tile=1024, overlap=128, rows=3, cols=4)
    assert (plan.rows, plan.cols) == (3, 4)
    _check_plan(plan, 128)


@pytest.mark.parametrize("bad", [dict(tile=64, overlap=64), dict(tile=8, multiple=16), dict(overlap=-1)])
def test_bad_plans_are_refused(bad):
    with pytest.raises(InvalidParameter):
        plan_tiles(100, 100, **{"tile": 64, "overlap": 8, "multiple": 1, **bad})


@pytest.mark.parametrize("blend", ["cosine", "linear"])
@pytest.mark.parametrize("tile,overlap,multiple", [(512, 32, 1), (300, 100, 1), (256, 128, 16), (1024, 128, 16)])
def test_identity_through_any_plan_is_bit_exact(blend, tile, overlap, multiple):
    x = torch.rand(1, 3, 1000, 1537, generator=torch.Generator().manual_seed(0))
    plan = plan_tiles(1000, 1537, tile=tile, overlap=overlap, multiple=multiple)
    out = assemble(crop_tiles(x, plan), plan, blend=blend)
    assert torch.equal(out, x)


def test_scaled_identity_matches_nearest_upscale_exactly():
    x = torch.rand(1, 3, 203, 331, generator=torch.Generator().manual_seed(1))
    plan = plan_tiles(203, 331, tile=96, overlap=24, multiple=1)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    tiles = [torch.nn.functional.interpolate(t[None], scale_factor=2, mode="nearest")
             for t in crop_tiles(x, plan)]
    assert torch.equal(assemble(tiles, plan.scaled(2)), up)


def test_constant_prediction_fuses_to_the_constant_in_latent_units():
    plan = plan_tiles(1024, 1536, tile=512, overlap=128, multiple=16).scaled(1 / 8)
    const = torch.full((len(plan), 16, plan.tile_h, plan.tile_w), 0.3712)
    out = assemble(const, plan)
    assert torch.equal(out, torch.full((1, 16, 128, 192), 0.3712))


def test_weights_form_a_partition_of_unity_for_two_tiles():
    plan = plan_tiles(64, 300, tile=180, overlap=60, multiple=1)
    w = blend_weights(plan, "linear")
    total = torch.zeros(64, 300, dtype=torch.float64)
    for t, wt in zip(plan.tiles, w, strict=True):
        ys, xs = t.slices()
        total[ys, xs] += wt[0]
    assert torch.allclose(total, torch.ones_like(total))


def test_blend_is_smooth_across_the_seam():
    # two tiles of different constant value: the blend ramps monotonically over the overlap
    plan = plan_tiles(8, 400, tile=240, overlap=80, multiple=1)
    a = torch.zeros(1, 1, 8, 240)
    b = torch.ones(1, 1, 8, 240)
    out = assemble([a, b], plan)[0, 0, 0]
    diffs = out[1:] - out[:-1]
    assert (diffs >= 0).all() and diffs.max() < 1.0 / 40


def test_assembler_reports_missing_tiles():
    plan = plan_tiles(100, 300, tile=128, overlap=16, multiple=1)
    asm = Assembler(plan, 3)
    asm.add(0, torch.zeros(1, 3, plan.tile_h, plan.tile_w))
    with pytest.raises(RuntimeError, match="never added"):
        asm.result()
    assert math.isclose(plan.tiles[0].w, plan.tile_w)
