"""Stages 2-3 on the memory and the time they have: text encoders off the device once the prompts are
encoded (moves recorded by the placement, on the CPU too), the chooser counting them, a GGUF
transformer through the whole stage, regional compilation without recompiles between tiles and
stages, blend weights made once per plan, and previews of the current x0."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from pipeline import CancelToken, build, images, run
from pipeline.config import Config
from pipeline.models.cache import module_bytes
from pipeline.models.flux import engine
from pipeline.models.flux import memory as flux_memory
from pipeline.models.flux.arch import LATENT_RGB, LATENT_RGB_BIAS
from pipeline.models.flux.compile import is_compiled, regional_compile
from pipeline.previews import PreviewSchedule, latent_to_rgb
from pipeline.samplers.flow_match import comfy_sigmas, noise_latents
from pipeline.stages import flux_refine

from ._flux_helpers import ConstantTransformer, LocalCodec, flux_stages, velocity, write_preset

GB = 10**9


def _watch_placements(monkeypatch) -> list:
    made = []
    original = flux_memory.placement

    def recording(*a, **k):
        made.append(original(*a, **k))
        return made[-1]

    monkeypatch.setattr(flux_memory, "placement", recording)
    return made


def _watch_sampling(monkeypatch) -> list:
    """What the device holds (parts, bytes) when the transformer runs."""
    seen = []
    original = engine.Velocity.__init__

    def init(self, transformer, placement, *a, **k):
        original(self, transformer, placement, *a, **k)
        transformer.register_forward_pre_hook(lambda m, args: seen.append(
            (placement.on_device(), placement.device_bytes(), module_bytes(m))))

    monkeypatch.setattr(engine.Velocity, "__init__", init)
    return seen


def test_text_encoders_leave_the_device_once_prompts_are_encoded(monkeypatch, tiny_models, portrait):
    placements, seen = _watch_placements(monkeypatch), _watch_sampling(monkeypatch)
    write_preset("flux-mem", flux_stages(steps=1, tile=256, extra='memory = "resident"'))
    small = images.resize(portrait, (256, 256))
    run(build("flux-mem"), small, seed=1, config=Config(comfy_models=(tiny_models,)))
    stage2, stage3 = placements
    moves = stage2.moves
    # clip and t5 came onto the device for their turn and went back before the transformer's first call
    assert moves.index(("clip", "host")) < moves.index(("transformer", "device"))
    assert moves.index(("t5", "device")) < moves.index(("t5", "host")) < moves.index(("transformer", "device"))
    assert "clip" not in stage2.parts and "t5" not in stage2.parts
    assert not any(name in ("clip", "t5") for name, _ in stage3.moves)  # stage 3 reused the embeddings
    # while sampling the device held the transformer and the VAE and nothing else (the GPU acceptance
    # check, allocated <= transformer + VAE + 1 GB, measures the same on a card: bench_e2e_gpu.py)
    parts, held, transformer = seen[0]
    assert parts == {"transformer", "vae"} and all(p == parts for p, _, _ in seen)
    assert transformer < held < transformer + 2_000_000  # + the tiny VAE


def test_chooser_counts_text_encoders_while_they_are_on_the_device(monkeypatch):
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 80 * GB))
    cuda = torch.device("cuda")
    parts = {"transformer": nn.Linear(1000, 1000), "vae": nn.Linear(10, 10)}  # 4 MB, on the CPU
    text = {"clip": nn.Linear(10, 10), "t5": nn.Linear(3000, 3000)}  # 36 MB
    work = flux_memory.ACTIVATION_BYTES_PER_TILE + flux_memory.MARGIN_BYTES
    free["bytes"] = work + 4_004_440  # enough for sampling, and more than T5 + margin
    assert flux_memory.choose_memory("auto", cuda, parts, 1, text=text) == "resident"
    n = flux_memory.needs({"transformer": 30 * GB, "vae": GB, "clip": GB, "t5": 10 * GB}, 4, held=31 * GB)
    # a resident transformer stays while T5 runs: the text encoders add to what is held
    assert n.resident == max(31 * GB + 4 * flux_memory.ACTIVATION_BYTES_PER_TILE + flux_memory.MARGIN_BYTES,
                             31 * GB + 11 * GB + flux_memory.MARGIN_BYTES)
    assert n.model_offload < n.resident and n.sequential < n.model_offload
    assert flux_memory.needs({"transformer": 30 * GB, "vae": GB}, 4, held=31 * GB).resident < n.resident


def test_gguf_transformer_runs_the_stage(tiny_models, portrait):
    write_preset("flux-gguf", flux_stages(steps=1, tile=256, stage_3=False,
                                          extra='transformer = "unet/variants/flux1-dev-Q8_0.gguf"'))
    events = []
    result = run(build("flux-gguf"), images.resize(portrait, (256, 256)), seed=1, progress=events.append,
                 config=Config(comfy_models=(tiny_models,)))
    assert np.isfinite(result.image.rgb).all()
    assert any("GGUF Q8_0" in e.message and "stays quantised" in e.message for e in events)


# ----------------------------------------------------------------------------- compile and speed


def test_regional_compile_does_not_recompile_between_tiles_or_stages(tiny_models):
    from torch._dynamo.utils import counters

    from pipeline.models.flux import load as fl

    transformer = fl.load_transformer(tiny_models / "diffusion_models/SRPO/diffusion_pytorch_model.safetensors",
                                      torch.float32)
    assert regional_compile(transformer, True, backend="eager") == 2 and is_compiled(transformer)
    rgb = torch.rand(1, 3, 256, 384, generator=torch.Generator().manual_seed(0))

    def stage(denoise: float) -> torch.Tensor:
        settings = engine.RefineSettings(steps=2, denoise=denoise, tile=256, overlap=128, tile_batch=1)
        return engine.refine(rgb, codec=LocalCodec(), velocity=velocity(transformer, settings), settings=settings,
                             generator=torch.Generator().manual_seed(0), cancel=CancelToken())

    before = counters["stats"]["unique_graphs"]
    stage(0.3)  # 2 tiles x 2 steps, one tile per call: the first call compiles one graph per block class
    compiled = counters["stats"]["unique_graphs"]
    assert compiled - before == 2
    out = stage(0.45)  # stage 3: same frame, same tiles, another schedule
    assert counters["stats"]["unique_graphs"] == compiled and torch.isfinite(out).all()
    assert regional_compile(transformer, False) == 0 and not is_compiled(transformer)


def test_compile_default_is_the_daemon_on_cuda_and_never_sequential():
    p = flux_refine.Params()

    def ctx(device: str, long_lived: bool):
        return SimpleNamespace(device=torch.device(device), models=SimpleNamespace(long_lived=long_lived))

    assert flux_refine._compile(p, ctx("cuda", True), "resident")  # type: ignore[arg-type]
    assert flux_refine._compile(p, ctx("cuda", True), "model_offload")  # type: ignore[arg-type]
    assert not flux_refine._compile(p, ctx("cuda", True), "sequential")  # type: ignore[arg-type]
    assert not flux_refine._compile(p, ctx("cuda", False), "resident")  # type: ignore[arg-type]  (the CLI)
    assert not flux_refine._compile(p, ctx("cpu", True), "resident")  # type: ignore[arg-type]
    on = flux_refine.Params(compile="on")
    assert flux_refine._compile(on, ctx("cpu", False), "resident")  # type: ignore[arg-type]


def test_blend_weights_are_made_once_per_plan_and_previews_show_x0(monkeypatch):
    made = []
    original = engine.blend_weights
    monkeypatch.setattr(engine, "blend_weights", lambda *a: made.append(a) or original(*a))
    engine.device_blend_weights.cache_clear()
    settings = engine.RefineSettings(steps=4, denoise=0.5, tile=256, overlap=128, tile_batch=4)
    rgb = torch.rand(1, 3, 384, 384, generator=torch.Generator().manual_seed(2))
    events = []
    engine.refine(rgb, codec=LocalCodec(), velocity=velocity(ConstantTransformer(0.25), settings), settings=settings,
                  generator=torch.Generator().manual_seed(3), cancel=CancelToken(), report=events.append,
                  previews=PreviewSchedule(4, per_stage=4, min_interval=0.0))
    assert len(made) == 1  # 4 steps, one set of weights
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 3  # steps 1-3 (the last step's result follows at once)
    # the first preview is x0 = x - sigma * v of the starting latent, through the fixed projection
    sigmas = comfy_sigmas(4, 0.5)
    noise = torch.randn((1, 16, 48, 48), generator=torch.Generator().manual_seed(3))
    start = noise_latents(LocalCodec.encode(rgb), noise, float(sigmas[0]))
    want = latent_to_rgb(start - float(sigmas[0]) * 0.25, LATENT_RGB, LATENT_RGB_BIAS)
    assert previews[0].shape == (48, 48, 3) and np.array_equal(previews[0], want)
    # a constant velocity is an exact straight flow: its x0 estimate is the same at every step (a preview
    # of the noisy x_t would not be)
    assert all(np.array_equal(p, previews[0]) for p in previews)
    assert not np.array_equal(latent_to_rgb(start, LATENT_RGB, LATENT_RGB_BIAS), want)


def test_daemon_info_says_which_flux_file_and_what_each_mode_holds(short_tmp, tiny_models):
    """GetServerInfo over real gRPC carries doctor's FLUX lines (`dermis status` prints them)."""
    from ._daemon_helpers import client, start

    d = start(short_tmp, pipeline=Config(comfy_models=(tiny_models,)))
    try:
        with client(d) as c:
            lines = c.info().flux_memory
    finally:
        d.stop(grace=5.0)
    text = "\n".join(lines)
    assert lines[0] == "FLUX (stages refine, final):"
    assert f"transformer: {tiny_models / 'diffusion_models/SRPO/diffusion_pytorch_model.safetensors'}" in text
    for mode in ("resident", "model_offload", "sequential"):
        assert any(line.strip().startswith(mode) and "encoding prompts" in line and "sampling" in line
                   for line in lines), (mode, text)
