"""Receiving a job upload: check the header before any pixel, then take the chunks into one buffer.

Everything a client can get wrong is caught here with a sentence that says what was wrong: sizes that
do not add up, absurd or empty images, chunks out of order, too big or missing, checksums that do not
match. Nothing is queued unless the whole upload is right.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline import Config, ImageTooLarge, InvalidParameter
from pipeline.errors import quoted
from proto.bulk import RawChunk

from ..errors import BadUpload, QueueFull

MAX_CHUNK_BYTES = 1 << 20  # 1 MiB, as the proto says
STALL_S = 30.0  # s an upload may send nothing before the daemon drops it
MAX_SIDE = 65_535  # px: beyond what any editor or codec handles
JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
BLOB_IMAGE, BLOB_MASK = 1, 2  # dermis.v1.Blob values


@dataclass(frozen=True)
class PixelLayout:
    width: int
    height: int
    channels: int
    bit_depth: int

    @property
    def nbytes(self) -> int:
        return self.width * self.height * self.channels * (self.bit_depth // 8)


def check_job_id(job_id: str) -> None:
    if not JOB_ID.fullmatch(job_id):
        raise InvalidParameter(f"job_id {quoted(job_id)} is not valid: use 1-64 characters from "
                               "A-Z a-z 0-9 . _ : - (a uuid4 is fine).")


def check_layout(header: Any, config: Config) -> PixelLayout:
    """The image description in a JobHeader, checked against itself and the daemon's limits."""
    if not header.HasField("image"):
        raise InvalidParameter("the job header has no image description (width, height, channels, bit_depth).")
    f = header.image
    layout = PixelLayout(int(f.width), int(f.height), int(f.channels), int(f.bit_depth))
    if layout.width == 0 or layout.height == 0:
        raise InvalidParameter(f"the image is empty ({layout.width}x{layout.height}).")
    if layout.width > MAX_SIDE or layout.height > MAX_SIDE or layout.width * layout.height > config.max_pixels:
        raise ImageTooLarge(
            f"the image is {layout.width}x{layout.height} = {layout.width * layout.height:,} pixels; the "
            f"daemon takes at most {config.max_pixels:,} pixels (and {MAX_SIDE} px a side).")
    if layout.channels not in (1, 2, 3, 4):
        raise InvalidParameter(f"channels must be 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA), not {layout.channels}.")
    if layout.bit_depth not in (8, 16):
        raise InvalidParameter(f"bit_depth must be 8 or 16, not {layout.bit_depth}.")
    if header.image_bytes != layout.nbytes:
        raise InvalidParameter(
            f"{layout.width}x{layout.height} with {layout.channels} channels at {layout.bit_depth} bits is "
            f"{layout.nbytes:,} bytes, but the header announces {header.image_bytes:,}.")
    return layout


class UploadBudget:
    """Bytes of uploads in flight at once: a cap on the memory many simultaneous clients can claim."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        with self._lock:
            if self._used and self._used + nbytes > self.limit:
                raise QueueFull(f"the daemon is receiving {self._used / 2**20:,.0f} MiB of other uploads; "
                                "try again in a moment.")
            self._used += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._used -= nbytes


def receive(header: Any, layout: PixelLayout, messages: Iterator[Any]) -> tuple[bytearray, bytearray | None]:
    """Read the chunk messages after the header into (image bytes, mask bytes or None).

    The buffers grow as the chunks arrive (they come in order without gaps, so each one is appended):
    a client that announces 512 MiB and sends nothing costs nothing (a stalled upload is ended by
    ``StallWatch``)."""
    sizes = {BLOB_IMAGE: layout.nbytes}
    crcs = {BLOB_IMAGE: header.image_crc32}
    if header.has_mask:
        sizes[BLOB_MASK] = layout.width * layout.height
        crcs[BLOB_MASK] = header.mask_crc32
    names = {BLOB_IMAGE: "image", BLOB_MASK: "mask"}
    bufs = {blob: bytearray() for blob in sizes}
    running = dict.fromkeys(sizes, 0)  # CRC-32 as the bytes arrive
    for c in messages:  # proto.bulk.RawChunk: blob, offset, data (a memoryview)
        if not isinstance(c, RawChunk):
            raise BadUpload("a job upload has exactly one header, as its first message; a second one came.")
        if c.blob not in sizes:
            what = "a mask, but the header says there is none" if c.blob == BLOB_MASK else f"blob {c.blob}"
            raise BadUpload(f"a chunk belongs to {what}.")
        n = len(c.data)
        if n == 0 or n > MAX_CHUNK_BYTES:
            raise BadUpload(f"chunks carry 1 to {MAX_CHUNK_BYTES:,} bytes, not {n:,}.")
        name, buf = names[c.blob], bufs[c.blob]
        if c.offset != len(buf):
            raise BadUpload(f"{name} chunk at byte {c.offset:,}, expected byte {len(buf):,}: chunks must "
                            "come in order without gaps.")
        if len(buf) + n > sizes[c.blob]:
            raise BadUpload(f"the {name} chunks add up to more than the {sizes[c.blob]:,} bytes announced.")
        buf += c.data
        running[c.blob] = zlib.crc32(c.data, running[c.blob])
    for blob, size in sizes.items():
        if len(bufs[blob]) != size:
            raise BadUpload(f"the upload ended after {len(bufs[blob]):,} of {size:,} {names[blob]} bytes: "
                            "chunks are missing.")
        if running[blob] & 0xFFFFFFFF != crcs[blob]:
            raise BadUpload(f"the {names[blob]} checksum does not match (CRC-32 {running[blob]:08x}, header "
                            f"says {crcs[blob]:08x}): the data was damaged on the way.")
    return bufs[BLOB_IMAGE], bufs.get(BLOB_MASK)


# ------------------------------------------------------------------------------------ stalled uploads


class Stall:
    """One upload under watch: when it last sent something, and what ends it."""

    def __init__(self, end: Callable[[], None]) -> None:
        self.end = end
        self.last = time.monotonic()
        self.fired = False

    def touch(self) -> None:
        self.last = time.monotonic()


class StallWatch:
    """Drops uploads that stopped sending: one thread for the whole daemon.

    gRPC's threaded server blocks a Submit handler in its request iterator until the next message
    comes, with no timeout of its own, so a client that sends a header and then nothing would hold a
    handler thread and its reserved upload budget for ever. Each upload is ``track``ed and touched on
    every message (``touching``); one that stays quiet for ``stall_s`` seconds has its ``end`` called.
    """

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._active: set[Stall] = set()
        self._thread: threading.Thread | None = None

    def track(self, end: Callable[[], None]) -> Stall:
        stall = Stall(end)
        with self._lock:
            self._active.add(stall)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dermis-upload-stalls", daemon=True)
                self._thread.start()
        return stall

    def untrack(self, stall: Stall) -> None:
        with self._lock:
            self._active.discard(stall)

    def _loop(self) -> None:
        while True:
            time.sleep(min(1.0, self.stall_s / 4))
            now = time.monotonic()
            with self._lock:
                quiet = [s for s in self._active if not s.fired and now - s.last >= self.stall_s]
                for s in quiet:
                    s.fired = True
            for s in quiet:
                s.end()


def touching(messages: Iterator[Any], stall: Stall) -> Iterator[Any]:
    """The upload's messages, each one noted by its Stall as it arrives."""
    for m in messages:
        stall.touch()
        yield m
