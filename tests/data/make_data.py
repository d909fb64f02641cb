"""Writes one small input file per failure mode, and the inputs people really have that need a
conversion (run once; the files are committed).

    python tests/data/make_data.py

``tiny_cmyk.icc`` is a CMYK printer profile made here (the corners of a 2x2x2x2 CMYK->Lab table, so a
few hundred bytes; ``INKS`` says which Lab colour each ink gives on paper) because Pillow cannot make
one and real press profiles are ~1 MB. ``sample.heic`` was made once with pillow-heif's encoder, which
is no dependency of Dermis (it bundles the GPL x265); Dermis decodes HEIC with pi-heif.
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


# Lab (D50) of paper and of each ink alone at 100 % on it: L in 1/2.55 steps and a, b in whole units, as
# an 8-bit ICC v2 table stores them (so the expected colours are exact). More inks multiply lightness.
PAPER = (242, 0, 0)  # L byte 242 = 94.9
INKS = {"C": (140, -37, -50), "M": (122, 74, -3), "Y": (227, -5, 93), "K": (38, 0, 0)}
RELATIVE_COLORIMETRIC = 1  # the profile's default rendering intent (the header says; Dermis follows it)


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _mft1(inputs: int, outputs: int, clut: bytes) -> bytes:
    """An ICC lut8Type with a 2-point grid and identity curves."""
    identity = bytes(range(256))
    matrix = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return (b"mft1" + bytes(4) + bytes([inputs, outputs, 2, 0]) + matrix + identity * inputs + clut
            + identity * outputs)


def tiny_cmyk_profile() -> bytes:
    """A valid ICC v2 output profile CMYK <-> Lab whose A2B0 table holds PAPER and INKS."""
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    used = [ink for ink, on in zip("CMYK", (c, m, y, k), strict=True) if on]
                    lightness = PAPER[0] * np.prod([INKS[i][0] / PAPER[0] for i in used]) if used else PAPER[0]
                    a = sum(INKS[i][1] for i in used) / max(1, len(used))
                    b = sum(INKS[i][2] for i in used) / max(1, len(used))
                    corners.append(bytes([round(lightness), round(a) + 128, round(b) + 128]))
    a2b = _mft1(4, 3, b"".join(corners))
    b2a = _mft1(3, 4, bytes(8 * 4))  # Lab -> CMYK: never used by Dermis (it only reads CMYK)
    text = b"Dermis tiny CMYK test profile"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(4 + 4 + 2 + 1 + 67)
    cprt = b"text" + bytes(4) + b"Public domain\0"
    wtpt = b"XYZ " + bytes(4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", wtpt), (b"A2B0", a2b), (b"B2A0", b2a)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"prtrCMYKLab "
              + bytes(12) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8) + struct.pack(">I", RELATIVE_COLORIMETRIC)
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
              + bytes(4 + 44))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


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
    # 8x8 blocks of paper, each ink alone and C+M, with the tiny profile: JPEG at full quality and TIFF
    profile = tiny_cmyk_profile()
    (HERE / "tiny_cmyk.icc").write_bytes(profile)
    blocks = np.zeros((8, 48, 4), np.uint8)
    for i in range(1, 5):
        blocks[:, 8 * i:8 * i + 8, i - 1] = 255
    blocks[:, 40:48, :2] = 255
    cmyk = Image.fromarray(blocks, mode="CMYK")
    cmyk.save(HERE / "cmyk_profile.jpg", "JPEG", quality=100, subsampling=0, icc_profile=profile)
    cmyk.save(HERE / "cmyk_profile.tif", "TIFF", icc_profile=profile)
    Image.fromarray((rng.random((24, 32)) * 2**31).astype(np.int32), mode="I").save(HERE / "int32.tif")


if __name__ == "__main__":
    main()
