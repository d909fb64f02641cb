"""Writes one small input file per failure mode (run once; the files are committed).

    python tests/data/make_data.py
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main() -> None:
    rng = np.random.default_rng(0)
    good = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    good.save(buf, "PNG")
    data = buf.getvalue()
    (HERE / "truncated.png").write_bytes(data[: len(data) // 2])
    (HERE / "empty.png").write_bytes(b"")
    (HERE / "not_an_image.png").write_text("this is a text file with a .png name\n")
    # a valid PNG header claiming 30000 x 30000 pixels with a tiny compressed body: a decompression bomb
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * 3 * 30000
    idat = zlib.compress(row * 4, 9)  # only 4 rows present: the header alone must be enough to refuse
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    (HERE / "bomb_30000x30000.png").write_bytes(bomb)
    Image.new("CMYK", (32, 24), (10, 200, 30, 0)).save(HERE / "cmyk.jpg", "JPEG")
    Image.fromarray((rng.random((24, 32)) * 2**31).astype(np.int32), mode="I").save(HERE / "int32.tif")


if __name__ == "__main__":
    main()
