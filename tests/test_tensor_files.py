"""The one reading layer: safetensors and weights-only pickles read alike, and every bad file is a
WrongWeights naming the file and why (never a raw library error, never code run)."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import WrongWeights
from pipeline.models.tensor_files import TensorSource, check_tensors, read_state_dict

TENSORS = {"model.diffusion_model.a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
           "model.diffusion_model.b": torch.tensor([1, 2], dtype=torch.int64), "other.c": torch.ones(1)}


@pytest.mark.parametrize("form", ["safetensors", "zip.ckpt", "legacy.pth", "lightning.ckpt"])
def test_every_format_reads_the_same_tensors(tmp_path, form):
    path = tmp_path / f"w.{form}"
    if form == "safetensors":
        save_file(TENSORS, str(path))
    elif form == "legacy.pth":  # the pre-zip format cannot be memory-mapped: read whole instead
        torch.save(TENSORS, path, _use_new_zipfile_serialization=False)
    else:
        torch.save({"state_dict": TENSORS, "epoch": 3} if form == "lightning.ckpt" else TENSORS, path)
    with TensorSource.open(path, ("model.diffusion_model.", ""), marker="a.weight") as src:
        assert src.prefix == "model.diffusion_model." and sorted(src.keys()) == ["a.weight", "b"]
        assert src.shape("a.weight") == (2, 3)
        assert torch.equal(src.get("a.weight"), TENSORS["model.diffusion_model.a.weight"])
        assert src.get("a.weight", torch.float16).dtype == torch.float16
        assert src.get("b", torch.float16).dtype == torch.int64  # only floating point is cast


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("name,write,words", [
    ("bad.safetensors", lambda p: p.write_bytes(b"\0" * 20), "cannot be read as a safetensors file"),
    ("bad.ckpt", lambda p: p.write_bytes(b"not a checkpoint"), "cannot be read as model weights"),
    ("bad.ckpt", lambda p: torch.save({"a": _Payload()}, p), "not loaded for safety"),
    ("bad.pth", lambda p: p.write_bytes(pickle.dumps({"a": _Payload()}, protocol=2)), "not loaded for safety"),
    ("bad.ckpt", lambda p: torch.save({"n": 1}, p), "holds no tensors"),
    ("bad.gguf", lambda p: p.write_bytes(b"GGUF"), "GGUF files are not supported"),
])
def test_bad_files_say_which_and_why(tmp_path, capsys, name, write, words):
    path = tmp_path / name
    write(path)
    with pytest.raises(WrongWeights) as e:
        TensorSource.open(path)
    assert str(path) in str(e.value) and words in str(e.value)
    assert "must never run" not in capsys.readouterr().out


def test_whole_files_keep_their_wrappers(tmp_path):
    torch.save({"params": {"w": torch.ones(2)}}, tmp_path / "esrgan.pth")  # BasicSR: spandrel unwraps it
    assert torch.equal(read_state_dict(tmp_path / "esrgan.pth")["params"]["w"], torch.ones(2))


def test_one_report_names_missing_unexpected_and_misshaped_keys():
    with pytest.raises(WrongWeights) as e:
        check_tensors("f.safetensors", {"a": (2,), "b": (3,), "x": (1,), "skip": (1,)},
                      {"a": (2,), "b": (4,), "c": (1,)}, "does not match a test model", ignore={"skip"})
    assert e.value.missing == ["c"] and e.value.unexpected == ["x"]
    assert "f.safetensors" in str(e.value) and "b [3] (needs [4])" in str(e.value)
    check_tensors("f", {"a"}, {"a"}, "never raised")  # keys alone: no shapes to compare
