"""What each fuzz target does with one input, without atheris: the targets (fuzz_*.py) call these,
and tests/test_fuzz_findings.py calls them with every input the fuzzer ever crashed on.

Each function feeds untrusted bytes to the real code and lets through only the errors that code is
meant to raise for bad input (a DermisError with a sentence, or the wire layer's own rejection).
Anything else escaping is a finding.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
from pathlib import Path

from google.protobuf.message import DecodeError

import pipeline
from daemon.jobs.recipe import build_recipe
from daemon.server import upload
from daemon.watch import settings
from pipeline import DermisError, images
from pipeline.stages import resolve
from proto import bulk
from proto.dermis.v1 import dermis_pb2 as pb
from proto.overrides import OverrideError, parse_overrides, split_overrides

MAX_PIXELS = 1 << 20  # small limits keep one input's memory and time bounded
CONFIG = pipeline.Config(max_pixels=MAX_PIXELS, max_output_pixels=4 * MAX_PIXELS)
_SCRATCH = Path(tempfile.mkdtemp(prefix="dermis-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def decode_image(data: bytes) -> None:
    """``pipeline.images.load`` on a file holding ``data`` (load reads it and decodes it)."""
    path = _SCRATCH / "input"
    path.write_bytes(data)
    try:
        images.load(path, max_pixels=MAX_PIXELS)
    except DermisError:
        pass


def frames(data: bytes) -> list[bytes]:
    """The upload target's input: messages as they arrive on the wire, each after a 2-byte length."""
    out, pos = [], 0
    while pos + 2 <= len(data) and len(out) < 64:
        (n,) = struct.unpack_from(">H", data, pos)
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def frame(messages: list[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


def assemble_upload(data: bytes) -> None:
    """The daemon's Submit path short of the queue: wire decoding (proto/bulk.py), the header checks
    and the chunk assembler (daemon/server/upload.py), the plan (preset, overrides, region)."""
    try:
        messages = [bulk.decode_submit(f, pb.SubmitRequest) for f in frames(data)]
    except (ValueError, DecodeError):  # gRPC ends the call: the deserializer refused the message
        return
    if not messages or isinstance(messages[0], bulk.RawChunk) or messages[0].WhichOneof("part") != "header":
        return  # the servicer's first check, BadUpload
    header = messages[0].header
    try:
        upload.check_job_id(header.job_id or "x")
        layout = upload.check_layout(header, CONFIG)
        from daemon.server import wire

        wire.plan(header, layout, CONFIG)
        upload.receive(header, layout, iter(messages[1:]))
    except DermisError:
        pass


def parse_settings_text(data: bytes) -> None:
    """Override text as people type it (--set, the GIMP field): split, parsed, built into a recipe
    and resolved against the stages' parameters."""
    text = data.decode("utf-8", "replace")
    preset, _, rest = text.partition("\n")
    try:
        items = split_overrides(rest)
        parse_overrides(items)
        recipe = build_recipe(preset.strip() or "lite", items)
        resolve(recipe, pipeline.WeightLocator(CONFIG))
    except (DermisError, OverrideError):
        pass


def read_sidecar(data: bytes) -> None:
    """A watch-folder sidecar ``<name>.dermis.toml`` someone dropped: read, merged, its key and suffix."""
    path = _SCRATCH / "x.png.dermis.toml"
    path.write_bytes(data)
    try:
        s = settings.resolve(settings.Settings(preset="lite"), None, path)
        s.key()
        s.output_suffix("x.png")
    except DermisError:
        pass
