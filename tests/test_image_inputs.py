"""Inputs people really have (issue 18, item 3): CMYK JPEG/TIFF through their ICC profile, float and
16-bit TIFF, the first page of a multi-page TIFF, PNG with a gAMA chunk, AVIF and HEIC; each
conversion says so in the image's notes, and `dermis upscale` prints them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageCms

from daemon.cli import main
from pipeline import images

from .conftest import DATA

# Lab (D50) the tiny test profile gives paper and each ink (tests/data/make_data.py: L as a byte)
INKS = {"C": (140, -37, -50), "M": (122, 74, -3), "Y": (227, -5, 93), "K": (38, 0, 0)}
BLOCKS = ["paper", "C", "M", "Y", "K"]  # 8 px columns of cmyk_profile.*, then C+M


def lab_to_srgb8(L: float, a: float, b: float) -> np.ndarray:
    """CIE Lab (D50) -> 8-bit sRGB, the textbook way (Bradford-adapted matrix), independent of lcms."""
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f**3 > 216 / 24389, f**3, (116 * f - 16) / (24389 / 27)) * np.array([0.9642, 1.0, 0.8249])
    m = np.array([[3.1338561, -1.6168667, -0.4906146], [-0.9787684, 1.9161415, 0.0334540],
                  [0.0719453, -0.2289914, 1.4052427]])
    lin = np.clip(m @ xyz, 0, 1)
    return np.round(255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055))


@pytest.mark.parametrize("name", ["cmyk_profile.jpg", "cmyk_profile.tif"])
def test_cmyk_goes_to_srgb_through_its_icc_profile(name):
    img = images.load(DATA / name)
    arr = images.to_array(img).astype(int)
    assert img.mode == "RGB" and img.bit_depth == 8
    assert img.notes == ("CMYK image converted to sRGB through its ICC profile (Dermis tiny CMYK test profile).",)
    # bytes 24-35 of an ICC header are when littlecms made the profile: two made a second apart differ there
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert img.icc_profile is not None and len(img.icc_profile) == len(srgb)
    assert img.icc_profile[:24] + img.icc_profile[36:] == srgb[:24] + srgb[36:]
    for i, ink in enumerate(BLOCKS[1:], start=1):  # each ink's colour is the profile's, within 2/255
        expected = lab_to_srgb8(INKS[ink][0] * 100 / 255, *INKS[ink][1:])
        assert np.abs(arr[4, 8 * i + 4] - expected).max() <= 2, (ink, arr[4, 8 * i + 4], expected)
    assert arr[4, 4].min() >= 240  # paper: white (relative colorimetric, the profile's own intent)
    # negative control: the plain formula (no profile) lands far from the profile's colours
    plain = np.asarray(PILImage.open(DATA / name).convert("RGB")).astype(int)
    assert np.abs(plain[4, 12] - arr[4, 12]).max() > 60


def test_cmyk_without_a_profile_is_converted_and_says_the_colours_are_approximate():
    img = images.load(DATA / "cmyk.jpg")
    assert img.mode == "RGB" and "without colour management" in img.notes[0] and "approximate" in img.notes[0]
    expected = np.asarray(PILImage.open(DATA / "cmyk.jpg").convert("RGB"))
    assert np.array_equal(images.to_array(img), expected)


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def test_float_tiff_becomes_16_bit_and_says_what_it_clipped():
    f = np.random.default_rng(0).random((6, 9, 3), dtype=np.float32)
    img = images.decode(_tiff(f, photometric="rgb"))
    assert img.bit_depth == 16 and img.mode == "RGB" and img.notes == ("32-bit float TIFF read as 16-bit.",)
    assert np.array_equal(images.to_array(img), np.round(f * 65535).astype(np.uint16))
    over = images.decode(_tiff(f * 2 - 0.5, photometric="rgb"))
    assert "clipped" in over.notes[0] and images.to_array(over).max() == 65535
    half = images.decode(_tiff(np.moveaxis(f, 2, 0).astype(np.float16), photometric="rgb", planarconfig="separate"))
    assert half.size == (9, 6) and np.abs(half.rgb - f).max() < 1e-3 and "16-bit float" in half.notes[0]
    grey = images.decode(_tiff(f[..., 0]))
    assert grey.mode == "L" and grey.bit_depth == 16


def test_16_bit_tiff_keeps_every_bit():
    raw = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    img = images.decode(_tiff(raw, photometric="rgb"))
    assert img.bit_depth == 16 and img.notes == () and np.array_equal(images.to_array(img), raw)


def test_multi_page_tiff_uses_the_first_page_and_says_so():
    pages = np.random.default_rng(2).integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    img = images.decode(_tiff(pages, photometric="rgb"))
    assert img.notes == ("the TIFF has 3 pages; the first one was used.",)
    assert np.array_equal(images.to_array(img), pages[0])


def _png_with(chunks: list[tuple[bytes, bytes]], arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "PNG")
    raw = buf.getvalue()
    extra = b""
    for kind, payload in chunks:
        extra += struct.pack(">I", len(payload)) + kind + payload
        extra += struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return raw[:33] + extra + raw[33:]  # right after IHDR


def test_png_gamma_is_re_encoded_to_srgb():
    arr = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gamma_1 = (b"gAMA", struct.pack(">I", 100000))
    linear = images.decode(_png_with([gamma_1], arr))  # gamma 1.0: linear light
    light = arr / 255.0
    srgb = np.where(light <= 0.0031308, light * 12.92, 1.055 * light ** (1 / 2.4) - 0.055)
    assert np.abs(linear.rgb - srgb).max() < 1e-5 and "gamma 1" in linear.notes[0]
    usual = images.decode(_png_with([(b"gAMA", struct.pack(">I", 45455))], arr))  # 1/2.2: sRGB already
    assert usual.notes == () and np.array_equal(images.to_array(usual), arr)
    tagged = images.decode(_png_with([(b"sRGB", b"\x00"), gamma_1], arr))  # an sRGB chunk overrides gAMA
    assert tagged.notes == () and np.array_equal(images.to_array(tagged), arr)


def test_avif_and_heic_decode():
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16], arr[:, 16:] = (200, 60, 40), (40, 90, 210)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "AVIF", quality=95)
    for img in (images.decode(buf.getvalue()), images.load(DATA / "sample.heic")):  # same two colours
        assert img.size == (32, 16) and img.mode == "RGB"
        assert np.abs(images.to_array(img)[8, [8, 24]].astype(int) - arr[8, [8, 24]]).max() <= 6


def test_int32_tiff_still_gets_the_clear_error():
    from pipeline.errors import UnsupportedImage

    with pytest.raises(UnsupportedImage, match="32-bit integer"):
        images.load(DATA / "int32.tif")


def test_upscale_lite_on_a_cmyk_jpeg_writes_rgb_and_says_it_converted(tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["upscale", str(DATA / "cmyk_profile.jpg"), "-o", str(out), "--preset", "lite", "--quiet"]) == 0
    result = images.load(out)
    assert result.mode == "RGB" and result.size == (96, 16)
    assert "converted to sRGB through its ICC profile" in capsys.readouterr().err
