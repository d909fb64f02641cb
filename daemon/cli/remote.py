"""`dermis upscale … --server ADDR`: the same job as a local run, sent to a running daemon.

The file is read and written here exactly as in a local run (same decoder, same encoder, same output
name and messages, same progress bar); only ``pipeline.run`` happens in the daemon. The raw pixels
travel at the input's bit depth, so the file written is identical to a local run with the same seed.
Ctrl-C cancels the job on the daemon.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import numpy as np

import pipeline
from pipeline import images
from proto.client import Client, ClientError, Event, EventKind, JobCancelled, JobRequest, JobResult

from ..jobs.recipe import overrides_from
from .progress_bar import ProgressBar


def upscale_remote(args: argparse.Namespace, seed: int) -> int:
    src, dst = Path(args.input), Path(args.output)
    config = pipeline.load_config(args.config, comfy_models=args.comfy_models)
    image = images.load(src, max_pixels=config.max_pixels)
    raw = images.to_array(image)
    mask = None
    if args.mask:  # the daemon takes a uint8 coverage plane: the mask's luma, as a local run uses it
        m = images.load(Path(args.mask), max_pixels=config.max_pixels)
        mask = np.ascontiguousarray(images.to_array(m, bit_depth=8, mode="L")[..., 0]).tobytes()
    region = pipeline.Region.parse(args.region) if args.region else None
    if args.device:
        print("dermis: note: --device is ignored with --server (the daemon has its device)", file=sys.stderr)
    job = JobRequest(
        pixels=raw.tobytes(), width=image.width, height=image.height, channels=raw.shape[2],
        bit_depth=image.bit_depth, preset=args.preset, scale=args.scale, seed=seed,
        overrides=overrides_from(args.overrides),
        region=(region.x, region.y, region.w, region.h) if region else None, mask=mask,
        output="layer" if args.layer else "full", priority=args.priority, job_id=uuid.uuid4().hex,
        icc_profile=image.icc_profile, client_name="cli",
        content="detail" if args.detail else "normal", detail_sigma=args.detail_sigma if args.detail else None,
    )
    if args.preset == "lite":
        print("dermis: preset 'lite' (CPU, no weights): resample + synthesised skin texture + grain, "
              "not diffusion", file=sys.stderr)
    address = None if args.server in ("auto", "local") else args.server
    with Client(address) as client, ProgressBar(enabled=not args.quiet, label=args.preset) as bar:
        on_event = _progress_to(bar)
        try:
            result = client.run(job, on_event=on_event)
        except KeyboardInterrupt:
            _cancel_quietly(client, job.job_id or "")
            raise
        except JobCancelled as e:  # not a failure of this command: someone cancelled the job
            print(f"dermis: {e}", file=sys.stderr)
            return 130
    out = _to_image(result)
    images.save(out, dst)
    what = "the detail layer (Grain Merge it over the original) " if result.content == "detail" else ""
    print(f"dermis: wrote {what}{dst} ({out.width}x{out.height}, preset {result.preset}, seed {result.seed}, "
          f"on {client.address})")
    if args.layer:
        print(f"dermis: layer offset {result.offset_x},{result.offset_y} in a "
              f"{result.canvas_width}x{result.canvas_height} canvas")
    if args.compare:
        from pipeline.compare import side_by_side

        pic = side_by_side(image, out, labels=("plain Lanczos", f"Dermis {result.preset}"))
        images.save(pic, args.compare, bit_depth=8)
        print(f"dermis: wrote before/after comparison {args.compare}")
    for m in (*image.notes, *result.messages):  # what reading the file changed happened here, not there
        print(f"dermis: note: {m}", file=sys.stderr)
    return 0


def _progress_to(bar: ProgressBar):
    def on_event(ev: Event) -> None:
        if ev.kind in (EventKind.stage, EventKind.progress):
            bar.update(pipeline.Progress(ev.stage, ev.step, ev.steps, ev.tile, ev.tiles, ev.fraction, ev.message))

    return on_event


def _to_image(result: JobResult) -> pipeline.Image:
    if result.bit_depth == 8:
        arr = np.frombuffer(result.pixels, dtype=np.uint8)
    else:  # little-endian on the wire; no copy on little-endian hosts
        arr = np.frombuffer(result.pixels, dtype=np.dtype("<u2")).astype(np.uint16, copy=False)
    arr = arr.reshape(result.height, result.width, result.channels)
    return images.from_array(arr, icc_profile=result.icc_profile)


def _cancel_quietly(client: Client, job_id: str) -> None:
    try:
        client.cancel(job_id)
        print(f"dermis: cancelled job {job_id} on the daemon", file=sys.stderr)
    except ClientError:
        pass
