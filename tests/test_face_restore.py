"""The face_restore stage: real loaders on random-weight files, the stage's choices (selection, visibility,
several faces, nothing found), missing/wrong weights, and the stage end to end through the CLI.

Random-weight detectors find no faces, so where a test needs one it gives the stage the portrait's
recorded landmarks by replacing ``face_restore.find_faces`` (the network itself is checked against
facexlib's key layout below and bit-exact against facexlib's code in tools/check_retinaface_parity.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline
from daemon.cli import main
from pipeline import images
from pipeline.errors import MissingWeights, WrongWeights
from pipeline.faces import Face
from pipeline.models.faces.load import load_face_restorer, load_retinaface
from pipeline.models.faces.retinaface import CONFIGS, RetinaFace
from pipeline.stages import face_restore
from pipeline.stages.face_restore import Params

from ._face_helpers import (
    PORTRAIT_LANDMARKS,
    ConstantRestorer,
    IdentityRestorer,
    logged,
    portrait_face,
    stage_context,
    synthetic_image,
    template_landmarks,
)

CPU = torch.device("cpu")


# --- loaders -------------------------------------------------------------------------------------

# sha256 of the sorted "key:shape" lines of facexlib 0.3.0's RetinaFace(network_name=...).state_dict(),
# computed once from facexlib's own code: our modules must produce exactly the same layout
FACEXLIB_LAYOUT = {"mobilenet0.25": (300, "a68ee35cde3ba05b"), "resnet50": (456, "b46fe033fafdd19d")}


@pytest.mark.parametrize("variant", ["mobilenet0.25", "resnet50"])
def test_retinaface_has_facexlibs_key_layout(variant):
    with torch.device("meta"):
        sd = RetinaFace(CONFIGS[variant]).state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(sd.items()))
    assert (len(sd), hashlib.sha256(text.encode()).hexdigest()[:16]) == FACEXLIB_LAYOUT[variant]


def test_retinaface_files_load_and_run(tiny_models, portrait):
    for name in ("detection_Resnet50_Final.pth", "detection_mobilenet0.25_Final.pth"):  # fp16 / "module."
        net = load_retinaface(tiny_models / "facedetection" / name)
        assert next(net.parameters()).dtype == torch.float32
        loc, conf, landm = net(torch.zeros(1, 3, 96, 64))
        anchors = (12 * 8 + 6 * 4 + 3 * 2) * 2
        assert loc.shape == (1, anchors, 4) and conf.shape == (1, anchors) and landm.shape == (1, anchors, 10)
        assert torch.isfinite(conf).all()


def test_wrong_detector_files_name_the_file_and_keys(tiny_models, tmp_path):
    with pytest.raises(WrongWeights, match="GFPGANv1.4.pth: is not a RetinaFace detector"):
        load_retinaface(tiny_models / "facerestore_models" / "GFPGANv1.4.pth")
    sd = torch.load(tiny_models / "facedetection" / "detection_mobilenet0.25_Final.pth", weights_only=True)
    del sd["module.ssh2.conv3X3.0.weight"]
    sd["module.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "broken_mobilenet.pth"
    torch.save(sd, bad)
    with pytest.raises(WrongWeights) as e:
        load_retinaface(bad)
    assert "broken_mobilenet.pth" in str(e.value)
    assert e.value.missing == ["ssh2.conv3X3.0.weight"] and e.value.unexpected == ["extra.weight"]


def _restorer_and_face(tiny_models, file: str):
    """A tiny restorer loaded from its ComfyUI folder, and an aligned synthetic 512² face to give it."""
    r = load_face_restorer(tiny_models / "facerestore_models" / file, CPU, torch.float32)
    return r, synthetic_image(512, 512, [template_landmarks(256, 240, 126)])


def test_gfpgan_loads_and_restores_reproducibly(tiny_models):
    r, crop = _restorer_and_face(tiny_models, "GFPGANv1.4.pth")
    assert r.arch == "GFPGAN"
    a = r.restore(crop, seed=5)
    b = r.restore(crop, seed=5)
    assert a.shape == (512, 512, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, b)  # its StyleGAN noise is drawn from the seed
    assert np.abs(a - crop).mean() > 0.05  # random weights: something else than the input


def test_codeformer_loads_and_fidelity_reaches_the_net(tiny_models):
    r, crop = _restorer_and_face(tiny_models, "codeformer-v0.1.0.pth")
    assert r.arch == "CodeFormer"
    prior = r.restore(crop, fidelity=0.0)
    faithful = r.restore(crop, fidelity=1.0)
    assert prior.shape == (512, 512, 3) and np.isfinite(prior).all()
    assert np.abs(prior - faithful).mean() > 1e-3  # w=0 skips the encoder fusion that w=1 adds


def test_wrong_restorer_file_says_what_it_needs(tiny_models):
    with pytest.raises(WrongWeights, match="1x-ITF-SkinDiffDetail-Lite-v1.pth: is not a GFPGAN face restorer"):
        load_face_restorer(tiny_models / "upscale_models" / "1x-ITF-SkinDiffDetail-Lite-v1.pth", CPU, torch.float32)


def test_weights_found_in_comfyui_folders_and_config(tiny_models, tmp_path):
    from pipeline.config import Config
    from pipeline.models import WeightLocator

    loc = WeightLocator(Config(comfy_models=(tiny_models,), models_dir=tmp_path / "none"))
    assert loc.find("gfpgan").name == "GFPGANv1.4.pth"
    assert loc.find("codeformer").name == "codeformer-v0.1.0.pth"
    assert loc.find("retinaface_resnet50").parent.name == "facedetection"
    assert loc.find("retinaface_mobilenet").name == "detection_mobilenet0.25_Final.pth"
    mine = tmp_path / "my_gfpgan.pth"
    mine.write_bytes(b"")
    loc = WeightLocator(Config(comfy_models=(tiny_models,), weights={"gfpgan": mine}))
    assert loc.find("gfpgan") == mine  # the config wins over the models folders


# --- the stage's choices (stand-in restorers: what is tested here is detection handling and paste) ---

@pytest.fixture
def use_restorer(monkeypatch):
    def install(restorer):
        monkeypatch.setattr(face_restore, "load_face_restorer", lambda *a, **k: restorer)
        return restorer

    return install


def give_faces(monkeypatch, faces: list[Face]) -> None:
    monkeypatch.setattr(face_restore, "find_faces", lambda rgb, params, ctx: list(faces))


def two_faces() -> tuple[np.ndarray, Face, Face]:
    big, small = template_landmarks(130, 140, 60), template_landmarks(330, 120, 40, angle_deg=10)
    return synthetic_image(280, 440, [big, small]), Face.from_landmarks(big), Face.from_landmarks(small)


def test_two_faces_largest_first_and_max_faces(monkeypatch, use_restorer):
    rgb, big, small = two_faces()
    give_faces(monkeypatch, [small, big])
    r = use_restorer(ConstantRestorer((1, 0, 0)))
    out = face_restore.run(rgb, Params(), ctx := stage_context(shape=rgb.shape[:2]))
    assert r.calls == 2
    np.testing.assert_allclose(out[140, 130], [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(out[120, 330], [1, 0, 0], atol=1e-5)
    assert "restored 2 faces with Constant (GFPGANv1.4.pth)" in logged(ctx)
    one = face_restore.run(rgb, Params(max_faces=1), stage_context(shape=rgb.shape[:2]))
    np.testing.assert_allclose(one[140, 130], [1, 0, 0], atol=1e-5)  # the larger face
    np.testing.assert_array_equal(one[60:200, 280:400], rgb[60:200, 280:400])  # the smaller is untouched


def test_min_face_leaves_small_faces_alone(monkeypatch, use_restorer):
    rgb, big, small = two_faces()
    give_faces(monkeypatch, [big, small])
    use_restorer(ConstantRestorer())
    out = face_restore.run(rgb, Params(min_face=int(small.size) + 1), stage_context(shape=rgb.shape[:2]))
    np.testing.assert_array_equal(out[60:200, 280:400], rgb[60:200, 280:400])
    assert not np.array_equal(out[100:180, 90:170], rgb[100:180, 90:170])


def test_a_selection_that_excludes_one_face(monkeypatch, use_restorer):
    rgb, big, small = two_faces()
    give_faces(monkeypatch, [big, small])
    r = use_restorer(ConstantRestorer((0, 1, 0)))
    sel = np.zeros(rgb.shape[:2], np.float32)
    sel[:, 250:] = 1  # only the small face on the right
    out = face_restore.run(rgb, Params(), stage_context(mask=sel, shape=rgb.shape[:2]))
    assert r.calls == 1  # the face outside the selection is not even restored
    np.testing.assert_array_equal(out[:, :250], rgb[:, :250])
    np.testing.assert_allclose(out[120, 330], [0, 1, 0], atol=1e-5)
    # use_selection=false: both faces, the selection is the compositor's business
    both = face_restore.run(rgb, Params(use_selection=False), stage_context(mask=sel, shape=rgb.shape[:2]))
    np.testing.assert_allclose(both[140, 130], [0, 1, 0], atol=1e-5)


def test_a_region_job_restores_the_face_inside_it(monkeypatch, use_restorer, tiny_models):
    """Through pipeline.run: the stage sees the region's crop (plus context) and the selection mask, so
    its detector's coordinates are crop coordinates, and the result lands back in the right place."""
    from pipeline.config import Config
    from pipeline.recipes import Recipe, StageSpec
    from pipeline.regions import Region, work_area

    rgb, big, small = two_faces()
    region = Region(280, 70, 100, 110)  # around the small face only
    recipe = Recipe("t", "t", "", 1.0, (StageSpec("face_restore", "face_restore"),), context=24, feather=6)
    crop = work_area(440, 280, region=region, context=24).crop
    seen = []

    def detector(stage_rgb, params, ctx):
        seen.append((stage_rgb.shape, None if ctx.mask is None else ctx.mask.shape))
        shift = np.array([crop.x, crop.y], np.float32)
        return [Face.from_landmarks(f.landmarks - shift) for f in (big, small)]

    monkeypatch.setattr(face_restore, "find_faces", detector)
    r = use_restorer(ConstantRestorer((0, 0, 1)))
    res = pipeline.run(recipe, pipeline.Image(rgb=rgb, alpha=None, bit_depth=8, mode="RGB", icc_profile=None),
                       region=region, config=Config(comfy_models=(tiny_models,)))
    assert seen == [((crop.h, crop.w, 3), (crop.h, crop.w))]
    assert r.calls == 1  # the big face lies outside the crop
    out = res.image.rgb
    np.testing.assert_allclose(out[120, 330], [0, 0, 1], atol=2 / 255)
    outside = np.ones(rgb.shape[:2], bool)
    outside[region.y - 8 : region.y + region.h + 8, region.x - 8 : region.x + region.w + 8] = False
    np.testing.assert_allclose(out[outside], rgb[outside], atol=1 / 255)  # 8-bit output encoding


def test_visibility_zero_leaves_the_image_unchanged(monkeypatch, use_restorer):
    rgb, big, _ = two_faces()
    give_faces(monkeypatch, [big])
    r = use_restorer(ConstantRestorer())
    ctx = stage_context(shape=rgb.shape[:2])
    out = face_restore.run(rgb, Params(visibility=0.0), ctx)
    np.testing.assert_array_equal(out, rgb)
    assert r.calls == 0 and any("visibility is 0" in m for m in logged(ctx))
    half = face_restore.run(rgb, Params(visibility=0.5), stage_context(shape=rgb.shape[:2]))
    full = face_restore.run(rgb, Params(visibility=1.0), stage_context(shape=rgb.shape[:2]))
    np.testing.assert_allclose(half, (rgb + full) / 2, atol=1e-6)


def test_identity_restorer_through_the_stage(monkeypatch, use_restorer, portrait):
    give_faces(monkeypatch, [portrait_face()])
    use_restorer(IdentityRestorer())
    out = face_restore.run(portrait.rgb, Params(), ctx := stage_context())
    diff = np.abs(out - portrait.rgb)
    assert diff.max() < 6 / 255 and diff.mean() < 0.05 / 255
    steps = [e for e in ctx.events if e[1] > 0]
    assert steps[-1][:2] == (1, 1) and "face 1/1" in steps[-1][4]


def test_no_faces_found_passes_the_image_through(tiny_models, portrait):
    """The real (random-weight) detector: it finds nothing, and the stage says so."""
    ctx = stage_context(weights={"gfpgan": tiny_models / "facerestore_models" / "GFPGANv1.4.pth",
                                 "retinaface_mobilenet": tiny_models / "facedetection" / "detection_mobilenet0.25_Final.pth"})
    out = face_restore.run(portrait.rgb, Params(detector="retinaface_mobile0.25"), ctx)
    assert out is portrait.rgb
    assert "no faces found: image unchanged" in logged(ctx)


def test_params_are_checked():
    from pipeline.errors import InvalidParameter
    from pipeline.stages import make_params

    with pytest.raises(InvalidParameter, match="visibility"):
        make_params(face_restore, {"visibility": "1.5"}, "face_restore")
    with pytest.raises(InvalidParameter, match="detect_size"):
        make_params(face_restore, {"detect_size": 10}, "face_restore")
    p = make_params(face_restore, {"detector": "retinaface_mobile0.25", "fidelity": "0.7"}, "face_restore")
    assert face_restore.weights(p) == ["gfpgan", "retinaface_mobilenet"] and p.fidelity == 0.7


# --- presets and the CLI ---------------------------------------------------------------------------

def test_supir_srpo_lists_face_restore_off_with_valid_params():
    from pipeline.stages import make_params

    recipe = pipeline.build("supir-srpo")
    spec = recipe.stage("face_restore")
    assert spec.kind == "face_restore" and not spec.enabled
    assert [s.id for s in recipe.stages].index("face_restore") < [s.id for s in recipe.stages].index("skin_detail")
    make_params(face_restore, spec.params, spec.id)
    assert pipeline.build("supir-srpo", {"face_restore.enabled": "true"}).stage("face_restore").enabled


@pytest.fixture
def faces_preset() -> str:
    """A user preset (the supir/flux stages need real weights): face_restore off, then a 1.5x resample."""
    import platformdirs

    d = Path(platformdirs.user_config_dir("dermis")) / "presets"
    d.mkdir(parents=True, exist_ok=True)
    (d / "faces-test.toml").write_text(
        'name = "faces-test"\nscale = 1.5\n\n'
        '[[stage]]\nid = "face_restore"\nkind = "face_restore"\nenabled = false\n\n'
        '[[stage]]\nid = "resample"\nkind = "resample"\n', encoding="utf-8")
    return "faces-test"


def test_cli_end_to_end_on_the_portrait(faces_preset, tiny_models, portrait_path, tmp_path, monkeypatch, capsys):
    plain, restored = tmp_path / "plain.png", tmp_path / "restored.png"
    base = ["upscale", str(portrait_path), "--preset", faces_preset, "--seed", "3", "--quiet",
            "--comfy-models", str(tiny_models)]
    assert main([*base, "-o", str(plain)]) == 0
    # the real random-weight detector finds nothing: same picture as without the stage, and a note
    nothing = tmp_path / "nothing.png"
    assert main([*base, "-o", str(nothing), "--set", "face_restore.enabled=true",
                 "--set", "face_restore.detector=retinaface_mobilenet"]) == 0
    assert "no faces found" in capsys.readouterr().err
    np.testing.assert_array_equal(images.load(nothing).rgb, images.load(plain).rgb)
    # the recorded landmarks: the random GFPGAN repaints the face square and nothing else
    give_faces(monkeypatch, [portrait_face()])
    assert main([*base, "-o", str(restored), "--set", "face_restore.enabled=true"]) == 0
    assert "restored 1 face with GFPGAN (GFPGANv1.4.pth)" in capsys.readouterr().err
    a, b = images.load(plain).rgb, images.load(restored).rgb
    assert a.shape == b.shape == (768, 768, 3)
    face = (slice(int(110 * 1.5), int(135 * 1.5)), slice(int(200 * 1.5), int(250 * 1.5)))  # eyes to mouth
    assert np.abs(a[face] - b[face]).mean() > 0.05
    far = np.ones(a.shape[:2], bool)
    far[0 : int(230 * 1.5), int(130 * 1.5) : int(320 * 1.5)] = False  # the face square and its margin
    np.testing.assert_array_equal(a[far], b[far])


def test_cli_names_the_missing_face_files(faces_preset, portrait_path, tmp_path, capsys):
    code = main(["upscale", str(portrait_path), "-o", str(tmp_path / "x.png"), "--preset", faces_preset,
                 "--set", "face_restore.enabled=true", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "GFPGANv1.4.pth" in err and "facerestore_models" in err
    assert "detection_Resnet50_Final.pth" in err and "facedetection" in err
    assert not (tmp_path / "x.png").exists()


def test_missing_weights_error_lists_every_place(tmp_path):
    from pipeline.config import Config
    from pipeline.models import WeightLocator

    with pytest.raises(MissingWeights) as e:
        WeightLocator(Config(comfy_models=(tmp_path,), models_dir=tmp_path / "m")).find("codeformer")
    assert any(str(tmp_path / "facerestore_models") in p for p in e.value.looked)


def test_one_detector_api_weight_free_faces_are_boxes_the_stage_cannot_align(monkeypatch, use_restorer, portrait):
    """detect_faces without a network is the Haar fallback: boxes, no landmarks; the restore stage (which
    aligns by landmarks) leaves such a face alone and says why, restoring none."""
    from pipeline.faces import detect_faces

    found = detect_faces(portrait.rgb)
    assert found and all(f.landmarks is None for f in found)
    x0, y0, x1, y1 = found[0].box
    assert found[0].centre == ((x0 + x1) / 2, (y0 + y1) / 2)
    cx, cy = found[0].centre  # the same face the recorded landmarks mark
    assert abs(cx - PORTRAIT_LANDMARKS[:, 0].mean()) < 20 and abs(cy - PORTRAIT_LANDMARKS[:, 1].mean()) < 30
    give_faces(monkeypatch, found[:1])
    restorer = use_restorer(IdentityRestorer())
    out = face_restore.run(portrait.rgb, Params(), ctx := stage_context())
    assert out is portrait.rgb and restorer.calls == 0
    assert "face 1: its landmarks do not fit the face template, skipped" in logged(ctx)
