"""Between the thin client's plain types (client_types.py, events.py) and the dermis.v1 messages.

``pb`` is the generated ``dermis_pb2`` module, passed in because grpc/protobuf are imported lazily
(proto/client.py). No network here: the client calls these to build requests and read replies.
Standard library only and Python 3.10 syntax (the editors' Pythons import it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from . import bulk
from .client_types import (
    ClientCounts,
    ClientError,
    JobInfo,
    JobRequest,
    ModelFile,
    ModelPlan,
    PresetInfo,
    Rejected,
    ServerInfo,
    StageInfo,
    WatchFolderCounts,
    WeightInfo,
    WorkerInfo,
)
from .events import Event, EventKind, JobResult, Preview

CHUNK_BYTES = 1 << 20  # 1 MiB per upload chunk: far below gRPC's 4 MiB message limit
_STATES = {0: "unknown", 1: "queued", 2: "running", 3: "paused", 4: "done", 5: "failed", 6: "cancelled"}
_PRIORITY_PB = {"editor": 1, "batch": 2}
_OUTPUT_PB = {"layer": 1, "full": 2}
_CONTENT_PB = {"normal": 1, "detail": 2}
_WEIGHT_STATUS = {0: "unknown", 1: "found", 2: "missing", 3: "loaded"}


# ------------------------------------------------------------------------------------------ upload


def header(pb: Any, job: JobRequest, job_id: str) -> Any:
    h = pb.JobHeader(
        job_id=job_id,
        preset=job.preset,
        overrides={str(k): str(v) for k, v in job.overrides.items()},
        output=_OUTPUT_PB[job.output],
        priority=_PRIORITY_PB[job.priority],
        client_name=job.client_name,
        image=pb.PixelFormat(width=job.width, height=job.height, channels=job.channels,
                             bit_depth=job.bit_depth),
        image_bytes=len(job.pixels),
        image_crc32=zlib.crc32(job.pixels) & 0xFFFFFFFF,
        icc_profile=job.icc_profile or b"",
        has_mask=job.mask is not None,
        mask_crc32=zlib.crc32(job.mask) & 0xFFFFFFFF if job.mask is not None else 0,
        content=_CONTENT_PB[job.content],
    )
    if job.detail_sigma is not None:
        h.detail_sigma = float(job.detail_sigma)
    if job.scale is not None:
        h.scale = float(job.scale)
    if job.seed is not None:
        h.seed = int(job.seed)
    if job.region is not None:
        x, y, w, hh = (int(v) for v in job.region)
        if w <= 0 or hh <= 0:
            raise Rejected(f"the region {x},{y},{w},{hh} is empty.", "invalid_argument")
        h.region.CopyFrom(pb.Region(x=x, y=y, width=w, height=hh))
    return h


def upload(pb: Any, job_header: Any, job: JobRequest) -> Iterator[Any]:
    """The Submit stream: the header, then the image and the mask in <= 1 MiB pre-encoded chunks."""
    yield pb.SubmitRequest(header=job_header)
    for blob, data in ((pb.BLOB_IMAGE, job.pixels), (pb.BLOB_MASK, job.mask)):
        if data is None:
            continue
        view = memoryview(data).cast("B")
        for offset in range(0, len(view), CHUNK_BYTES):
            yield bulk.encode_chunk(blob, offset, view[offset:offset + CHUNK_BYTES])


# ------------------------------------------------------------------------------------------ events


def event(msg: Any, chunks: list[Any]) -> Event:
    """A JobEvent message as an Event; ``chunks`` are the result's pixels received before done (or
    the one bytes object read from a shared-memory file)."""
    kind = msg.WhichOneof("kind")
    base = {"job_id": msg.job_id, "seq": int(msg.seq)}
    if kind == "queued":
        return Event(EventKind.queued, position=msg.queued.position, **base)
    if kind == "started":
        return Event(EventKind.started, **base)
    if kind == "stage":
        return Event(EventKind.stage, stage=msg.stage.stage, message=msg.stage.message, **base)
    if kind == "progress":
        p = msg.progress
        return Event(EventKind.progress, stage=p.stage, step=p.step, steps=p.steps, tile=p.tile,
                     tiles=p.tiles, fraction=p.fraction, message=p.message, **base)
    if kind == "preview":
        p = msg.preview
        area = (p.area_x, p.area_y, p.area_width, p.area_height) if p.area_width else None
        return Event(EventKind.preview, stage=p.stage,
                     preview=Preview(p.width, p.height, p.pixels, area, p.stage), **base)
    if kind == "message":
        return Event(EventKind.message, stage=msg.message.stage, message=msg.message.text, **base)
    if kind == "done":
        return Event(EventKind.done, fraction=1.0, result=result(msg.job_id, msg.done.result, chunks),
                     **base)
    if kind == "error":
        e = msg.error
        return Event(EventKind.error, stage=e.stage, error_code=e.code or "internal",
                     message=e.message, **base)
    if kind == "cancelled":
        return Event(EventKind.cancelled, message=msg.cancelled.message, **base)
    # an event kind from a newer daemon: pass it on as a message so nothing breaks
    return Event(EventKind.message, message="", **base)


def result(job_id: str, info: Any, chunks: list[Any]) -> JobResult:
    pixels = b"".join(chunks)  # one bytes object comes back as it is, without a copy
    if len(pixels) != info.bytes:
        raise ClientError(f"the result has {len(pixels):,} bytes, the daemon announced {info.bytes:,}.",
                          "data_loss")
    if zlib.crc32(pixels) & 0xFFFFFFFF != info.crc32:
        raise ClientError("the result's checksum does not match: the transfer was damaged.", "data_loss")
    f = info.format
    return JobResult(
        job_id=job_id, pixels=pixels, width=f.width, height=f.height, channels=f.channels,
        bit_depth=f.bit_depth, offset_x=info.offset_x, offset_y=info.offset_y,
        canvas_width=info.canvas_width, canvas_height=info.canvas_height, layer_name=info.layer_name,
        preset=info.preset, seed=int(info.seed), icc_profile=info.icc_profile or None,
        messages=list(info.messages), stage_seconds=dict(info.stage_seconds),
        content="detail" if info.content == _CONTENT_PB["detail"] else "normal",
    )


# ------------------------------------------------------------------------------------ the daemon


def server_info(r: Any) -> ServerInfo:
    presets = [
        PresetInfo(p.name, p.label, p.description, p.scale,
                   [StageInfo(s.id, s.kind, s.enabled, s.optional, dict(s.params)) for s in p.stages],
                   context=int(p.context), feather=float(p.feather), previews=bool(p.previews))
        for p in r.presets
    ]
    weights = [WeightInfo(w.key, w.description, _WEIGHT_STATUS.get(w.status, "unknown"), w.path)
               for w in r.weights]
    return ServerInfo(
        version=r.version, device=r.device, vram_free=int(r.vram_free), vram_total=int(r.vram_total),
        default_preset=r.default_preset, presets=presets, weights=weights, queue_length=r.queue_length,
        api_version=r.api_version, loaded_models={m.key: int(m.bytes) for m in r.loaded_models},
        model_budget=int(r.model_budget), max_pixels=int(r.limits.max_pixels),
        capabilities=list(r.capabilities), catalogue=[model_file(f) for f in r.catalogue],
        shared_memory_dir=r.shared_memory_dir, flux_memory=list(r.flux_memory),
        workers=[WorkerInfo(w.name, w.host, w.device, int(w.vram_free), int(w.vram_total),
                            {m.key: int(m.bytes) for m in w.loaded_models}, w.job_id, w.removed)
                 for w in r.workers],
    )


def model_file(f: Any) -> ModelFile:
    return ModelFile(role=f.role, variant=f.variant, filename=f.filename, size=int(f.size),
                     size_exact=f.size_exact, licence=f.licence, non_commercial=f.non_commercial, gated=f.gated,
                     source=f.source, page=f.page, path=f.path, action=f.action, note=f.note,
                     supported=f.supported, is_default=f.is_default)


def model_plan(r: Any) -> ModelPlan:
    """A FetchModelsReply as the plan a plugin shows before asking."""
    return ModelPlan(files=[model_file(f) for f in r.files], download_bytes=int(r.download_bytes),
                     free_bytes=int(r.free_bytes), folder=r.folder, licences_to_accept=list(r.licences_to_accept))


def fetch_request(pb: Any, *, preset: str, roles: list[str], variant: str, dry_run: bool,
                  accept_licences: bool, job_id: str, client_name: str) -> Any:
    return pb.FetchModelsRequest(job_id=job_id, preset=preset, roles=list(roles), variant=variant,
                                 dry_run=dry_run, accept_licences=accept_licences, client_name=client_name)


def jobs(reply: Any) -> list[JobInfo]:
    """ListJobsReply.jobs as JobInfo."""
    return [JobInfo(j.job_id, _STATES.get(j.state, "unknown"), j.preset,
                    "batch" if j.priority == _PRIORITY_PB["batch"] else "editor", j.client_name,
                    j.fraction, j.position, j.error_code, j.message, j.submitted_unix, j.kind) for j in reply.jobs]


def client_counts(reply: Any) -> list[ClientCounts]:
    return [ClientCounts(c.client_name, c.queued, c.running, c.done, c.failed, c.cancelled)
            for c in reply.counts]


def folder_counts(reply: Any) -> list[WatchFolderCounts]:
    return [WatchFolderCounts(f.folder, f.out, f.preset, f.pending, f.running, f.done, f.skipped,
                              f.failed, f.error) for f in reply.folders]
