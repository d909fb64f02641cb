"""What GetServerInfo reports: version, device and memory, presets, weights, residency, limits."""

from __future__ import annotations

from typing import Any

import torch

import pipeline
from pipeline import WeightLocator
from pipeline.device import describe
from pipeline.models import WEIGHTS
from pipeline.previews import sends_previews
from pipeline.stages import describe_weights
from proto.dermis.v1 import dermis_pb2 as pb
from proto.discovery import API_VERSION

from ..jobs.queue import JobQueue
from ..jobs.residency import Residency
from .models import catalogue_pb
from .upload import MAX_CHUNK_BYTES

CAPABILITIES = ("u16-pixels", "mask", "region", "layer-output", "resume", "idempotent-submit",
                "fetch-models", "detail-layer")


def device_text(device: torch.device, dtype: torch.dtype) -> tuple[str, int, int]:
    """('NVIDIA … (cuda:0, bfloat16)', free bytes, total bytes); 0 bytes on the CPU."""
    info = describe(device, dtype)
    return f"{info.name} ({device}, {str(dtype).removeprefix('torch.')})", info.free_memory, info.total_memory


def build(config: pipeline.Config, device: tuple[torch.device, torch.dtype], residency: Residency,
          queue: JobQueue, max_queue: int) -> Any:
    name, free, total = device_text(*device)
    loaded = residency.loaded()
    presets = [_preset(r) for _, r in sorted(pipeline.presets().items())]
    # "previews" only when some preset's jobs really send them (PresetInfo.previews says which)
    capabilities = list(CAPABILITIES) + (["previews"] if any(p.previews for p in presets) else [])
    return pb.ServerInfo(
        version=pipeline.__version__,
        api_version=API_VERSION,
        device=name,
        vram_free=free,
        vram_total=total,
        default_preset=pipeline.DEFAULT_PRESET,
        presets=presets,
        weights=_weights(config, [key for key, _ in loaded]),
        queue_length=queue.active_count(),
        loaded_models=[pb.LoadedModel(key=k, bytes=n) for k, n in loaded],
        model_budget=residency.budget or 0,
        limits=pb.Limits(max_pixels=config.max_pixels, max_output_pixels=config.max_output_pixels,
                         max_chunk_bytes=MAX_CHUNK_BYTES, max_queue=max_queue),
        capabilities=capabilities,
        catalogue=catalogue_pb(),
        flux_memory=_flux_memory(config, device),
    )


def _flux_memory(config: pipeline.Config, device: tuple[torch.device, torch.dtype]) -> list[str]:
    """`dermis doctor`'s FLUX lines (file headers only, nothing loaded); none when no preset uses FLUX."""
    if not any(s.kind == "flux_refine" and s.enabled for r in pipeline.presets().values() for s in r.stages):
        return []
    from pipeline.errors import DermisError
    from pipeline.models.flux.report import flux_lines

    try:
        return flux_lines(WeightLocator(config), *device)
    except (DermisError, OSError) as e:  # a file that cannot be read must not take GetServerInfo down
        return [f"FLUX (stages refine, final): cannot say: {e}"]


def worker_pb(slot: Any, state: dict[str, Any]) -> Any:
    """One cluster worker (daemon/cluster/pool.py's Slot and its last describe()) as a WorkerInfo."""
    return pb.WorkerInfo(
        name=slot.name, host=state.get("host", slot.node), device=state.get("device", ""),
        vram_free=int(state.get("vram_free", 0)), vram_total=int(state.get("vram_total", 0)),
        loaded_models=[pb.LoadedModel(key=k, bytes=n) for k, n in state.get("loaded", [])],
        job_id=slot.job if slot.alive else "", removed=slot.out)


def _preset(r: pipeline.Recipe) -> Any:
    stages = [pb.StageInfo(id=s.id, kind=s.kind, enabled=s.enabled, optional=s.optional,
                           params={k: str(v) for k, v in s.params.items()}) for s in r.stages]
    return pb.PresetInfo(name=r.preset, label=r.label, description=r.description, scale=r.scale,
                         stages=stages, context=r.context, feather=r.feather, previews=sends_previews(r))


def _weights(config: pipeline.Config, loaded_keys: list[str]) -> list[Any]:
    """Every weight a preset names, once: found / missing / loaded (its path in a residency key)."""
    locator = WeightLocator(config)
    seen: dict[str, Any] = {}
    for _, recipe in sorted(pipeline.presets().items()):
        for _spec, name, path, _looked in describe_weights(recipe, locator):
            if name in seen or name.startswith("(stage unavailable"):
                continue
            if path is None:
                status = pb.WEIGHT_STATUS_MISSING
            elif any(str(path) in key for key in loaded_keys):
                status = pb.WEIGHT_STATUS_LOADED
            else:
                status = pb.WEIGHT_STATUS_FOUND
            spec = WEIGHTS.get(name)
            seen[name] = pb.WeightInfo(key=name, description=spec.description if spec else f"file {name}",
                                       status=status, path=str(path) if path else "")
    return list(seen.values())
