"""Translations between dermis.v1 messages and the daemon's/pipeline's types. No gRPC calls here.

Raw pixels become ``pipeline.Image`` through ``pipeline.images.from_array`` and results go back
through ``to_array``: all pixel arithmetic stays in the pipeline.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pipeline
from pipeline import Config, ImageTooLarge, InvalidParameter, Recipe, Region, WeightLocator, images
from pipeline.detail import DEFAULT_SIGMA, check_sigma
from pipeline.stages import resolve
from proto import bulk
from proto.dermis.v1 import dermis_pb2 as pb
from proto.events import Event, EventKind

from ..jobs.fetch import FetchSummary
from ..jobs.queue import Job, JobSpec, Priority, State
from .upload import MAX_CHUNK_BYTES, PixelLayout

STATE_PB = {State.QUEUED: pb.JOB_STATE_QUEUED, State.RUNNING: pb.JOB_STATE_RUNNING,
            State.PAUSED: pb.JOB_STATE_PAUSED, State.DONE: pb.JOB_STATE_DONE,
            State.FAILED: pb.JOB_STATE_FAILED, State.CANCELLED: pb.JOB_STATE_CANCELLED}
PRIORITY_PB = {Priority.EDITOR: pb.PRIORITY_EDITOR, Priority.BATCH: pb.PRIORITY_BATCH}
CONTENT = {pb.RESULT_CONTENT_UNSPECIFIED: "normal", pb.RESULT_CONTENT_NORMAL: "normal",
           pb.RESULT_CONTENT_DETAIL: "detail"}
CONTENT_PB = {"normal": pb.RESULT_CONTENT_NORMAL, "detail": pb.RESULT_CONTENT_DETAIL}
Buffer = bytearray | memoryview  # received chunks, or a mapped shared-memory file (read-only)


@dataclass(frozen=True)
class JobPlan:
    """What a header asks for, checked before the upload: the recipe, seed and placement."""

    recipe: Recipe
    seed: int
    region: Region | None
    output: str
    priority: Priority
    content: str = "normal"
    detail_sigma: float = DEFAULT_SIGMA


def fingerprint(header: Any) -> str:
    """Same header (hence same pixels, by their CRC) = same request, for idempotent resubmits. How the
    pixels travel (a shared-memory file's id) is not part of the request."""
    if header.shared_memory_id:
        header = type(header).FromString(header.SerializeToString())
        header.shared_memory_id = ""
    return hashlib.sha256(header.SerializeToString(deterministic=True)).hexdigest()


def plan(header: Any, layout: PixelLayout, config: Config) -> JobPlan:
    """Build and check the recipe (preset, overrides, scale, stages, weights) and the placement."""
    scale = header.scale if header.HasField("scale") else None
    recipe = pipeline.build(header.preset or pipeline.DEFAULT_PRESET, dict(header.overrides), scale=scale)
    resolve(recipe, WeightLocator(config))  # unknown stage, bad parameter, missing weights: fail now
    out_w, out_h = max(1, round(layout.width * recipe.scale)), max(1, round(layout.height * recipe.scale))
    if out_w * out_h > config.max_output_pixels:
        raise ImageTooLarge(f"the result would be {out_w}x{out_h} = {out_w * out_h:,} pixels, more than the "
                            f"limit of {config.max_output_pixels:,}; lower the scale or select a region.")
    if header.HasField("seed"):
        if header.seed >= 2**63:
            raise InvalidParameter(f"seed must be below 2^63, not {header.seed}.")
        seed = int(header.seed)
    else:
        seed = secrets.randbelow(2**31)
    region = None
    if header.HasField("region"):
        r = header.region
        region = Region(int(r.x), int(r.y), int(r.width), int(r.height))
        region.clipped(layout.width, layout.height)  # raises for an empty region or one outside the image
    output = "full" if header.output == pb.OUTPUT_MODE_FULL else "layer"
    if header.output not in (pb.OUTPUT_MODE_UNSPECIFIED, pb.OUTPUT_MODE_LAYER, pb.OUTPUT_MODE_FULL):
        raise InvalidParameter(f"unknown output mode {header.output}.")
    if header.priority not in (pb.PRIORITY_UNSPECIFIED, pb.PRIORITY_EDITOR, pb.PRIORITY_BATCH):
        raise InvalidParameter(f"unknown priority {header.priority}.")
    priority = Priority.BATCH if header.priority == pb.PRIORITY_BATCH else Priority.EDITOR
    if header.content not in CONTENT:
        raise InvalidParameter(f"unknown result content {header.content}.")
    sigma = check_sigma(header.detail_sigma) if header.HasField("detail_sigma") else DEFAULT_SIGMA
    return JobPlan(recipe, seed, region, output, priority, CONTENT[header.content], sigma)


def job_spec(header: Any, job_id: str, layout: PixelLayout, job: JobPlan, image_buf: Buffer,
             mask_buf: Buffer | None, result_file: Callable[[int], Any] | None = None) -> JobSpec:
    """The queued job. Pixels are decoded on the executor thread, so Submit answers quickly; the
    result goes into ``result_file(nbytes)`` when given (shm.SharedMemoryDir.result_file)."""
    icc = bytes(header.icc_profile) or None
    return JobSpec(
        recipe=job.recipe,
        image=lambda: raw_image(image_buf, layout, icc),
        seed=job.seed,
        region=job.region,
        mask=(lambda: raw_mask(mask_buf, layout)) if mask_buf is not None else None,
        output=job.output,
        content=job.content,
        detail_sigma=job.detail_sigma,
        priority=job.priority,
        client_name=header.client_name[:64],
        job_id=job_id,
        fingerprint=fingerprint(header),
        input_bytes=len(image_buf) + (len(mask_buf) if mask_buf is not None else 0),
        finish=lambda result: to_raw(result, result_file),
    )


def raw_image(buf: Buffer, layout: PixelLayout, icc: bytes | None) -> pipeline.Image:
    wire, native = (np.uint8, np.uint8) if layout.bit_depth == 8 else (np.dtype("<u2"), np.uint16)
    arr = np.frombuffer(buf, dtype=wire).astype(native, copy=False)  # no copy on little-endian hosts
    return images.from_array(arr.reshape(layout.height, layout.width, layout.channels), icc_profile=icc)


def raw_mask(buf: Buffer, layout: PixelLayout) -> np.ndarray:
    """width*height uint8 -> the pipeline's float32 0..1 selection plane."""
    plane = np.frombuffer(buf, dtype=np.uint8).reshape(layout.height, layout.width, 1)
    return images.from_array(plane).rgb[..., 0].copy()


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class RawResult:
    """A finished job's result as it goes on the wire (built on the executor thread)."""

    pixels: Any  # bytes, or the mapping of ``file``
    layout: PixelLayout
    offset: tuple[int, int]
    canvas: tuple[int, int]
    layer_name: str
    preset: str
    seed: int
    icc_profile: bytes | None
    messages: tuple[str, ...]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    crc32: int = 0
    file: Any = None  # the shm.ResultFile holding the pixels, when there is one
    content: str = "normal"

    @property
    def nbytes(self) -> int:
        return len(self.pixels)


def to_raw(result: pipeline.RunResult, result_file: Callable[[int], Any] | None = None) -> RawResult:
    arr = images.to_array(result.image)
    wire = np.uint8 if arr.dtype == np.uint8 else np.dtype("<u2")
    file = result_file(arr.size * np.dtype(wire).itemsize) if result_file is not None else None
    if file is not None:  # straight into the shared-memory file: no copy when a client takes it
        np.frombuffer(file.map, dtype=wire).reshape(arr.shape)[...] = arr
        pixels = file.map
    else:
        pixels = np.ascontiguousarray(arr.astype(wire, copy=False)).tobytes()
    h, w = arr.shape[:2]
    return RawResult(
        pixels=pixels,
        layout=PixelLayout(w, h, arr.shape[2], 8 if arr.dtype == np.uint8 else 16),
        offset=result.offset,
        canvas=result.canvas_size,
        layer_name=result.layer_name,
        preset=result.recipe.preset,
        seed=result.seed,
        icc_profile=result.image.icc_profile,
        messages=result.messages,
        stage_seconds=dict(result.timings),
        crc32=zlib.crc32(pixels) & 0xFFFFFFFF,
        content=result.content,
        file=file,
    )


def result_events(job_id: str, seq: int, raw: RawResult | FetchSummary, shared_memory_id: str = "") -> Iterator[Any]:
    """The result pixels in <= 1 MiB chunks (none when they wait in a shared-memory file), then Done,
    all with the done event's seq (a model download has no pixels: only Done, with its notes)."""
    if isinstance(raw, FetchSummary):
        yield pb.JobEvent(job_id=job_id, seq=seq, done=pb.Done(result=pb.ResultInfo(
            preset=raw.preset, messages=list(raw.messages))))
        return
    view = memoryview(raw.pixels)
    for offset in range(0, 0 if shared_memory_id else len(view), MAX_CHUNK_BYTES):  # pre-encoded: one copy
        yield bulk.encode_result_chunk(job_id, seq, offset, view[offset:offset + MAX_CHUNK_BYTES])
    info = pb.ResultInfo(
        format=pb.PixelFormat(width=raw.layout.width, height=raw.layout.height,
                              channels=raw.layout.channels, bit_depth=raw.layout.bit_depth),
        bytes=len(raw.pixels), crc32=raw.crc32, offset_x=raw.offset[0], offset_y=raw.offset[1],
        canvas_width=raw.canvas[0], canvas_height=raw.canvas[1], layer_name=raw.layer_name,
        preset=raw.preset, seed=raw.seed, icc_profile=raw.icc_profile or b"",
        messages=list(raw.messages), stage_seconds=raw.stage_seconds, shared_memory_id=shared_memory_id,
        content=CONTENT_PB[raw.content],
    )
    yield pb.JobEvent(job_id=job_id, seq=seq, done=pb.Done(result=info))


# ------------------------------------------------------------------------------------------- events


def event_pb(ev: Event) -> Any:
    """A job event other than done (which result_events sends) as a JobEvent message; the client's
    proto/messages.py ``event`` reads it back into the same Event."""
    m = pb.JobEvent(job_id=ev.job_id, seq=ev.seq)
    K = EventKind
    if ev.kind is K.queued:
        m.queued.position = ev.position
    elif ev.kind is K.started:
        m.started.SetInParent()
    elif ev.kind is K.stage:
        m.stage.stage, m.stage.message = ev.stage, ev.message
    elif ev.kind is K.progress:
        m.progress.CopyFrom(pb.Progress(stage=ev.stage, step=ev.step, steps=ev.steps, tile=ev.tile,
                                        tiles=ev.tiles, fraction=ev.fraction, message=ev.message))
    elif ev.kind is K.preview and ev.preview is not None:
        p = ev.preview
        x, y, w, h = p.area or (0, 0, 0, 0)
        m.preview.CopyFrom(pb.Preview(width=p.width, height=p.height, pixels=p.pixels, area_x=x, area_y=y,
                                      area_width=w, area_height=h, stage=p.stage or ev.stage))
    elif ev.kind is K.message:
        m.message.stage, m.message.text = ev.stage, ev.message
    elif ev.kind is K.error:
        m.error.CopyFrom(pb.Error(code=ev.error_code, message=ev.message, stage=ev.stage))
    elif ev.kind is K.cancelled:
        m.cancelled.message = ev.message
    return m


def job_info(job: Job) -> Any:
    return pb.JobInfo(
        job_id=job.id, state=STATE_PB[job.state], preset=job.preset, kind=job.kind,
        priority=PRIORITY_PB[job.priority], client_name=job.spec.client_name, fraction=job.fraction,
        position=max(job.position, 0), error_code=job.error_code, message=job.message,
        submitted_unix=job.submitted,
    )


def counts_pb(counts: dict[str, dict[str, int]]) -> list[Any]:
    return [pb.ClientCounts(client_name=name, **row) for name, row in sorted(counts.items())]


def folders_pb(rows: list[dict[str, Any]]) -> list[Any]:
    """WatchService.counts() -> WatchFolderCounts messages."""
    return [pb.WatchFolderCounts(**row) for row in rows]
