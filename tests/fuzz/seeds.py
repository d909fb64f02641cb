"""Seed inputs for each fuzz target: small valid examples the fuzzer mutates from."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from proto import bulk
from proto.dermis.v1 import dermis_pb2 as pb

from .checks import frame

DATA = Path(__file__).resolve().parents[1] / "data"


def images() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
    out = [p.read_bytes() for p in sorted(DATA.iterdir()) if p.suffix in (".png", ".jpg", ".tif", ".heic")
           and p.stat().st_size < 64 << 10]
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {}), ("BMP", {}), ("TIFF", {}),
                    ("AVIF", {"quality": 60})):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt, **kw)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(buf, "PNG")  # RGBA
    out.append(buf.getvalue())
    raw = out[-1]
    gama = b"gAMA" + struct.pack(">I", 100000)
    out.append(raw[:33] + struct.pack(">I", 4) + gama + struct.pack(">I", zlib.crc32(gama)) + raw[33:])
    for arr, kw in ((rgb.astype(np.float32) / 255, {"photometric": "rgb"}),
                    ((rgb.astype(np.uint16) * 257), {"photometric": "rgb"}),
                    (np.stack([rgb, rgb]), {"photometric": "rgb"}),
                    (rgb[..., 0], {})):
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, **kw)
        out.append(buf.getvalue())
    return out


def uploads() -> list[bytes]:
    pixels = bytes(range(96))  # 8x4 RGB
    mask = bytes(32)
    head = dict(preset="lite", image=pb.PixelFormat(width=8, height=4, channels=3, bit_depth=8),
                image_bytes=96, image_crc32=zlib.crc32(pixels))
    plain = pb.SubmitRequest(header=pb.JobHeader(**head)).SerializeToString()
    masked = pb.SubmitRequest(header=pb.JobHeader(**head, has_mask=True, mask_crc32=zlib.crc32(mask),
                                                  region=pb.Region(x=1, y=1, width=4, height=2),
                                                  overrides={"grain.strength": "0.05"}, seed=3)).SerializeToString()
    chunks = [bulk.encode_chunk(1, 0, pixels[:50]), bulk.encode_chunk(1, 50, pixels[50:])]
    return [frame([plain, *chunks]), frame([masked, *chunks, bulk.encode_chunk(2, 0, mask)]),
            frame([plain, bulk.encode_chunk(1, 0, pixels)])]


def overrides() -> list[bytes]:
    return [b"lite\ngrain.strength=0.05, feather=8; context=32\nscale=2",
            b"lite\ngrain.enabled=false\nskin.strength=0.02", b"supir\nsupir.steps=10, supir.cfg=4.5",
            b"lite\nfeather=1e300", b"tiles\nupscale.tile=64"]


def sidecars() -> list[bytes]:
    return [b'preset = "lite"\nscale = 2.0\nseed = 7\nregion = "1,2,3,4"\nformat = "png"\n'
            b'[set]\n"grain.strength" = 0.03\n',
            b'region = [1, 2, 3, 4]\nformat = "same"\n[set]\nfeather = 4\n"grain.enabled" = false\n']


SEEDS = {"images": images, "upload": uploads, "overrides": overrides, "sidecar": sidecars}
