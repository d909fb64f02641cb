"""The one memory placement both families use: mode names, the auto choice, eager vs lazy offload and
which parts stream in sequential mode (SUPIR's and FLUX's policies), hooks removed at the end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import InvalidParameter
from pipeline.models.flux import memory as flux_memory
from pipeline.models.placement import Placement, choose_mode, mode_of
from pipeline.models.supir import pipeline as supir
from pipeline.stages.supir import _needs

GB = 1 << 30


class Moves(nn.Module):
    """No parameters, so the placement cannot tell where it is and asks every time: ``moves`` lists
    every device it was sent to (nothing is really moved, there is no GPU here)."""

    def __init__(self, log: list, name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def to(self, device):  # type: ignore[override]
        self.log.append((self.name, torch.device(device).type))
        return self


def test_mode_names_and_aliases():
    assert mode_of("offload") == mode_of("model_offload") == "model_offload"  # supir.memory's name
    with pytest.raises(InvalidParameter, match="memory must be auto, resident, model_offload, sequential"):
        mode_of("lean")
    assert choose_mode("auto", torch.device("cpu"), resident=1e30, offload=1e30) == "resident"


def test_auto_choice_from_free_memory(monkeypatch):
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 80 * GB))
    cuda = torch.device("cuda")
    parts = {"transformer": nn.Linear(1000, 1000), "vae": nn.Linear(10, 10)}  # on the CPU: held 0
    work = flux_memory.ACTIVATION_BYTES_PER_TILE * 2 + flux_memory.MARGIN_BYTES
    for space, want in [(work + 4_004_440, "resident"), (work + 4_004_000, "model_offload"), (work + 4_003_999, "sequential")]:
        free["bytes"] = space
        assert flux_memory.choose_memory("auto", cuda, parts, 2) == want
    needs = _needs(supir.SupirModels(nn.Linear(1000, 1000), nn.Linear(10, 10), nn.Linear(10, 10),
                                     nn.Linear(10, 10), None, None, None, None))  # type: ignore[arg-type]
    for space, want in [(10 * GB, "resident"), (4 * GB, "model_offload"), (2 * GB, "sequential")]:
        free["bytes"] = space
        assert choose_mode("auto", cuda, **needs) == want
    assert choose_mode("offload", cuda, **needs) == "model_offload"


@pytest.mark.parametrize("eager", [False, True])
def test_offload_eager_or_lazy(eager):
    log: list = []
    place = Placement("model_offload", "cuda", {"a": Moves(log, "a"), "b": Moves(log, "b")}, eager=eager)
    with place.active("a"):
        assert log == [("b", "cpu"), ("a", "cuda")]
    # SUPIR (eager): the phase's model leaves at once; FLUX (lazy): it stays until another needs the room
    assert log[2:] == ([("a", "cpu")] if eager else [])
    place.release()
    assert log[-2:] == [("a", "cpu"), ("b", "cpu")]


def test_sequential_streams_the_named_parts_and_unhooks_at_release():
    parts = {"transformer": nn.Linear(4, 4), "vae": nn.Linear(4, 4)}
    x = torch.randn(2, 4)
    ref = {k: m(x) for k, m in parts.items()}
    place = flux_memory.placement("sequential", torch.device("cpu"), parts)
    with place.active("transformer"):
        assert hasattr(parts["transformer"], "_hf_hook") and not hasattr(parts["vae"], "_hf_hook")
        assert torch.equal(parts["transformer"](x), ref["transformer"])
    with place.active("vae"):  # the transformer gets its weights back when it has to leave
        assert not hasattr(parts["transformer"], "_hf_hook")
    every = supir.placement("sequential", torch.device("cpu"), parts)  # SUPIR streams every part
    with every.active("transformer", "vae"):
        assert all(hasattr(m, "_hf_hook") for m in parts.values())
    every.release()
    assert not any(hasattr(m, "_hf_hook") for m in parts.values())
    assert all(torch.equal(m(x), ref[k]) for k, m in parts.items())
