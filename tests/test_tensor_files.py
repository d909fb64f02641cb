"""The one reading layer: safetensors and weights-only pickles read alike, and every bad file is a
WrongWeights naming the file and why (never a raw library error, never code run)."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import WrongWeights
from pipeline.models.tensor_files import (
    TensorSource,
    check_tensors,
    identity_plan,
    read_state_dict,
    stream_into,
)

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
    ("bad.gguf", lambda p: p.write_bytes(b"GGUF"), "cannot be read as a GGUF file: it is damaged"),
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


def test_hub_folders_read_the_plain_file_not_its_precision_variant(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    save_file({"w": torch.ones(2, dtype=torch.float16) * 2}, str(tmp_path / "model.fp16.safetensors"))
    with TensorSource(tmp_path) as src:
        assert torch.equal(src.get("w"), torch.ones(2))  # what from_pretrained reads without variant=
    (tmp_path / "model.safetensors").unlink()
    with TensorSource(tmp_path) as src:  # a folder holding only the variant still reads
        assert src.get("w").dtype == torch.float16


def test_training_wrappers_are_unwrapped_in_pickles(tmp_path):
    torch.save({"params_ema": {"w": torch.ones(2)}, "params": {"w": torch.zeros(2)}}, tmp_path / "basicsr.pth")
    with TensorSource(tmp_path / "basicsr.pth") as src:
        assert torch.equal(src.get("w"), torch.ones(2))  # BasicSR's EMA weights, as spandrel picks them


def test_bookkeeping_buffers_a_file_lacks_are_zeroed_and_nothing_else(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, str(tmp_path / "old.safetensors"))
    with torch.device("meta"):
        empty = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    with TensorSource(tmp_path / "old.safetensors") as src:
        loaded = stream_into(empty, src, identity_plan(src.keys()), dtype=torch.float32, what="a test net",
                             zero_if_absent=["1.num_batches_tracked"])
    assert loaded[1].num_batches_tracked.item() == 0 and torch.equal(loaded[0].weight, net[0].weight)
    del sd["1.running_mean"]  # negative control: a real buffer missing is still an error
    save_file(sd, str(tmp_path / "lacking.safetensors"))
    with torch.device("meta"):
        empty = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    with TensorSource(tmp_path / "lacking.safetensors") as src, pytest.raises(WrongWeights) as e:
        stream_into(empty, src, identity_plan(src.keys()), dtype=torch.float32, what="a test net",
                    zero_if_absent=["1.num_batches_tracked"])
    assert e.value.missing == ["1.running_mean"]


def test_one_loading_path_in_the_pipeline():
    """Weights reach modules only through tensor_files.stream_into: no other module reads a whole state
    dict and assigns it (spandrel's own loader for its architectures is the one library route; tokenizers
    are not weights)."""
    import ast
    from pathlib import Path

    import pipeline

    root = Path(pipeline.__file__).parent
    routes = {"load_state_dict", "load_file", "from_pretrained", "load"}
    found = set()
    for path in root.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                    continue
                name, owner = call.func.attr, ast.unparse(call.func.value)
                if name not in routes or (name == "load" and owner != "torch"):
                    continue
                if name == "from_pretrained" and ("tokenizer" in fn.name or fn.name == "_from_source"):
                    continue
                found.add(f"{path.relative_to(root)}:{fn.name}")
    assert found == {"models/readers.py:read_pickle", "models/tensor_files.py:stream_into"}, found
