"""The weight catalogue (pipeline/models/catalogue.toml) against the weight specs the locator searches with.

When a family's spec changes (new patterns, a format becoming loadable) these tests say which catalogue
entries to update: every weights key has catalogue files and one default; every file of a supported
variant is found by the real locator where the catalogue puts it; the unsupported ones say why."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline
from pipeline.errors import InvalidParameter
from pipeline.models import WEIGHTS, WeightLocator
from pipeline.models.catalogue import CATALOGUE_PATH, catalogue, load

FILES = catalogue().files


def test_every_weights_key_has_files_and_exactly_one_default():
    assert set(catalogue().roles()) == set(WEIGHTS)
    for role in WEIGHTS:
        defaults = [f.variant for f in catalogue().for_role(role) if f.is_default]
        assert len(defaults) == 1, (role, defaults)


def test_the_presets_roles_are_the_catalogues():
    """Each file names the presets that use its role; the shipped presets' stages agree."""
    from pipeline.fetch import status

    locator = WeightLocator(pipeline.Config(models_dir=Path("/nonexistent")))
    shipped = sorted(p.stem for p in (Path(pipeline.__file__).parent / "presets").glob("*.toml"))
    assert "supir-srpo" in shipped
    for name in shipped:
        roles = {r.role for r in status([name], locator)}
        for role in roles:
            assert all(name in f.presets for f in catalogue().for_role(role)), (name, role)


@pytest.mark.parametrize("entry", [f for f in FILES if f.supported and f.source != "package"],
                         ids=lambda f: f"{f.role}-{f.variant}")
def test_the_locator_finds_each_supported_file_where_the_catalogue_puts_it(entry, tmp_path):
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    place = models / entry.relpath
    if entry.kind == "dir":
        (place / entry.inner).mkdir(parents=True)
    else:
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(b"x")
    found = WeightLocator(pipeline.Config(comfy_models=(models,), models_dir=tmp_path / "own")).find_optional(entry.role)
    assert found is not None and found.resolve() == (place / entry.inner).resolve()


def test_a_file_in_another_folder_is_not_found():
    """Negative control for the test above: the same file one folder off is not found."""
    entry = catalogue().default("sdxl")
    assert entry is not None
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        models = Path(d)
        (models / "loras").mkdir()
        (models / "loras" / entry.filename).write_bytes(b"x")
        assert WeightLocator(pipeline.Config(comfy_models=(models,), models_dir=models / "own")).find_optional("sdxl") is None


def test_sources_are_complete_and_honest():
    for f in FILES:
        where = f"{f.role}/{f.variant}"
        assert f.verified.strip(), where
        if f.source == "hf":
            assert f.repo.count("/") == 1 and (f.path or f.kind == "dir"), where
        if f.source == "url":
            assert f.url.startswith("https://"), where
        if f.sha256:  # only a publisher's own statement (its docs or its own Hub page) pins a hash
            assert f.evidence in ("publisher", "hf-page"), where
        if f.evidence == "none":
            assert f.source == "manual", where
        if not f.supported:
            assert f.use in ("future", "alternative") and not f.downloadable, where
    # every default of a role a preset needs (on by default) is downloadable or says where to get it
    for role in catalogue().roles():
        d = catalogue().default(role)
        assert d is not None and (d.downloadable or d.source in ("manual", "package") or d.kind == "dir"), role


def test_variants_pick_files_and_aliases():
    assert catalogue().choose("flux_t5", "fp8").filename == "t5xxl_fp8_e4m3fn.safetensors"
    assert catalogue().choose("flux_transformer", "fp8").filename == "flux1-dev-fp8-e4m3fn.safetensors"
    q8 = catalogue().choose("flux_transformer", "gguf-q8")  # GGUF loads since issue 15
    assert q8.supported and q8.filename.endswith("Q8_0.gguf") and q8.relpath.parts[0] == "unet"
    assert catalogue().choose("flux_transformer", "fp8-scaled").filename == "flux_dev_fp8_scaled_diffusion_model.safetensors"
    assert not any(f.use == "future" and f.supported for f in FILES)
    assert catalogue().choose("sdxl", "fp8").variant == "base-1.0-0.9vae"  # no such variant: the default
    assert catalogue().choose("flux_vae").gated and not catalogue().choose("flux_vae", "schnell").gated


def test_a_broken_catalogue_is_named(tmp_path):
    text = CATALOGUE_PATH.read_text(encoding="utf-8")
    bad = tmp_path / "c.toml"
    bad.write_text(text.replace('source = "hf"', 'source = "ftp"', 1))
    with pytest.raises(InvalidParameter, match="source must be one of"):
        load(bad)
    bad.write_text(text.replace("supported = true", "supported = true\ncolour = 1", 1))
    with pytest.raises(InvalidParameter, match="unknown keys colour"):
        load(bad)
