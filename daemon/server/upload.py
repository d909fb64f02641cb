"""Receiving a job upload: check the header before any pixel, then take the chunks into one buffer.

Everything a client can get wrong is caught here with a sentence that says what was wrong: sizes that
do not add up, absurd or empty images, chunks out of order, too big or missing, checksums that do not
match. Nothing is queued unless the whole upload is right.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline import Config, ImageTooLarge, InvalidParameter
from proto.bulk import RawChunk

from ..errors import BadUpload, QueueFull

MAX_CHUNK_BYTES = 1 << 20  # 1 MiB, as the proto says
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
        raise InvalidParameter(f"job_id {job_id[:80]!r} is not valid: use 1-64 characters from "
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
    """Read the chunk messages after the header into (image bytes, mask bytes or None)."""
    sizes = {BLOB_IMAGE: layout.nbytes}
    crcs = {BLOB_IMAGE: header.image_crc32}
    if header.has_mask:
        sizes[BLOB_MASK] = layout.width * layout.height
        crcs[BLOB_MASK] = header.mask_crc32
    names = {BLOB_IMAGE: "image", BLOB_MASK: "mask"}
    bufs = {blob: bytearray(n) for blob, n in sizes.items()}
    got = dict.fromkeys(sizes, 0)
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
        name = names[c.blob]
        if c.offset != got[c.blob]:
            raise BadUpload(f"{name} chunk at byte {c.offset:,}, expected byte {got[c.blob]:,}: chunks must "
                            "come in order without gaps.")
        if got[c.blob] + n > sizes[c.blob]:
            raise BadUpload(f"the {name} chunks add up to more than the {sizes[c.blob]:,} bytes announced.")
        bufs[c.blob][c.offset:c.offset + n] = c.data
        running[c.blob] = zlib.crc32(c.data, running[c.blob])
        got[c.blob] += n
    for blob, size in sizes.items():
        if got[blob] != size:
            raise BadUpload(f"the upload ended after {got[blob]:,} of {size:,} {names[blob]} bytes: "
                            "chunks are missing.")
        if running[blob] & 0xFFFFFFFF != crcs[blob]:
            raise BadUpload(f"the {names[blob]} checksum does not match (CRC-32 {running[blob]:08x}, header "
                            f"says {crcs[blob]:08x}): the data was damaged on the way.")
    return bufs[BLOB_IMAGE], bufs.get(BLOB_MASK)
