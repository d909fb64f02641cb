"""Presets, overrides, config files and the weights locator."""

import os

import pytest

import pipeline
from pipeline.config import load_config
from pipeline.errors import InvalidParameter, MissingWeights, UnknownPreset
from pipeline.models import WeightLocator


def test_builtin_presets_and_default():
    table = pipeline.presets()
    assert {"lite", "supir-srpo"} <= set(table)
    assert pipeline.DEFAULT_PRESET == "supir-srpo"
    srpo = table["supir-srpo"]
    ids = [s.id for s in srpo.stages]
    assert ids == ["face_restore", "skin_detail", "supir", "grain", "refine", "final"]
    assert not srpo.stage("face_restore").enabled and srpo.stage("skin_detail").optional


def test_overrides_apply_to_stages_and_recipe():
    r = pipeline.build("lite", {"grain.strength": "0.1", "scale": "3", "skin_texture.enabled": "false",
                               "context": "10"})
    assert r.scale == 3 and r.context == 10
    assert r.stage("grain").params["strength"] == "0.1"
    assert not r.stage("skin_texture").enabled
    assert pipeline.build("lite", {"scale": "1.5"}, scale=2).scale == 2


@pytest.mark.parametrize(
    "items,words",
    [({"nope.x": "1"}, "no stage 'nope'"), ({"colour": "1"}, "unknown setting"),
     ({"scale": "huge"}, "float"), ({"scale": "100"}, "between 0.25 and 8"),
     ({"grain.enabled": "maybe"}, "bool")],
)
def test_bad_overrides_are_refused(items, words):
    with pytest.raises(InvalidParameter, match=words):
        pipeline.build("lite", items)


def test_override_text_is_parsed_by_the_clients_not_the_library():
    with pytest.raises(TypeError, match="parse_overrides"):
        pipeline.build("lite", ["grain.strength=0.1"])  # type: ignore[arg-type]


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UnknownPreset, match="lite"):
        pipeline.build("nonexistent")


def test_user_presets_and_aliases(tmp_path):
    d = tmp_path / "config" / "dermis" / "presets"
    d.mkdir(parents=True)
    (d / "mine.toml").write_text('name = "mine"\naliases = ["m"]\nscale = 1.0\n[[stage]]\nid = "grain"\n')
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    assert pipeline.build("m").preset == "mine"
    assert pipeline.build("mine").stages[0].kind == "grain"


def test_config_file_weights_and_comfy_folders(tmp_path, monkeypatch):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "upscale_models" / "skin").mkdir(parents=True)
    found = comfy / "upscale_models" / "skin" / "1x-ITF-SkinDiffDetail-Lite-v1.pth"
    found.write_bytes(b"x")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'comfy_models = "{comfy}"\ndevice = "cpu"\n[limits]\nmax_pixels = 1000\n')
    config = load_config(cfg)
    assert config.comfy_models == (comfy,) and config.max_pixels == 1000 and config.device == "cpu"
    assert WeightLocator(config).find("skin_detail") == found
    # an explicit [weights] entry wins; a relative path is relative to the config file
    other = tmp_path / "mine.pth"
    other.write_bytes(b"y")
    cfg.write_text('[weights]\nskin_detail = "mine.pth"\n')
    assert WeightLocator(load_config(cfg)).find("skin_detail") == other
    # env var and the CLI option add folders
    monkeypatch.setenv("DERMIS_COMFY_MODELS", str(comfy))
    assert load_config().comfy_models == (comfy,)


def test_missing_weights_message_is_one_line_and_keeps_every_place(tmp_path):
    """The message names the file and where it goes (one line, no CLI option: editors show it too);
    every place searched stays on the error for `dermis doctor --verbose`."""
    config = pipeline.Config(comfy_models=(tmp_path / "a", tmp_path / "b"))
    with pytest.raises(MissingWeights) as e:
        WeightLocator(config).find("skin_detail")
    assert str(e.value) == "Missing weights 'skin_detail': upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth (20.1 MB)"
    looked = "\n".join(e.value.looked)
    assert str(tmp_path / "a" / "upscale_models") in looked and str(tmp_path / "b" / "ESRGAN") in looked


def test_bad_config_files(tmp_path):
    with pytest.raises(InvalidParameter, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(InvalidParameter, match="not valid TOML"):
        load_config(bad)
    bad.write_text("[weights]\nskin_detail = 3\n")
    with pytest.raises(InvalidParameter, match="path string"):
        load_config(bad)


def test_dermis_config_env(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('device = "cpu"\n')
    monkeypatch.setenv("DERMIS_CONFIG", str(cfg))
    assert load_config().path == cfg


def test_one_registry_of_every_familys_weights_without_importing_a_stage():
    """Each family lists its specs in its own weights.py; the registry has all of them as soon as
    pipeline.models is imported (no stage module needs to run first), keys unique."""
    import subprocess
    import sys

    from pipeline.models import WEIGHTS, weights
    from pipeline.models.faces.weights import SPECS as FACES
    from pipeline.models.flux.weights import SPECS as FLUX
    from pipeline.models.sdxl.weights import SPECS as SDXL
    from pipeline.models.supir.weights import SPECS as SUPIR
    from pipeline.models.upscale.weights import SPECS as UPSCALE

    keys = ["codeformer", "flux_clip_l", "flux_clip_tokenizer", "flux_dev", "flux_t5", "flux_t5_tokenizer",
            "flux_transformer", "flux_vae", "gfpgan", "retinaface_mobilenet", "retinaface_resnet50", "sdxl",
            "sdxl_lightning", "sdxl_tokenizer", "skin_detail", "supir_v0f", "supir_v0q"]
    fresh = subprocess.run([sys.executable, "-c", "import sys; from pipeline.models import WEIGHTS; "
                            "print(sorted(WEIGHTS)); print(sorted(m for m in sys.modules if '.stages.' in m and 'context' not in m))"],
                           capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert fresh == [str(keys), "[]"]
    assert sorted(s.key for t in (UPSCALE, FACES, SDXL, SUPIR, FLUX) for s in t) == sorted(WEIGHTS) == keys
    with pytest.raises(ValueError, match="'sdxl' is listed by two families"):
        weights._registry(SDXL, SDXL)
