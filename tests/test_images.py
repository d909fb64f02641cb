import io

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from pipeline import files, images
from pipeline.errors import CorruptImage, ImageTooLarge, InvalidParameter, UnsupportedImage

from .conftest import DATA


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _raw(h, w, c, depth, seed=0):
    rng = np.random.default_rng(seed)
    hi = 256 if depth == 8 else 65536
    return rng.integers(0, hi, (h, w, c), dtype=np.uint16 if depth == 16 else np.uint8)


LOSSLESS = [(f, c, d) for f in ("PNG", "TIFF") for c in (1, 2, 3, 4) for d in (8, 16)]


@pytest.mark.parametrize("fmt,channels,depth", LOSSLESS)
def test_lossless_round_trip_keeps_depth_alpha_and_profile(fmt, channels, depth):
    raw = _raw(37, 53, channels, depth)
    img = images.from_array(raw, icc_profile=_srgb_icc())
    back = images.decode(images.encode(img, fmt))
    assert back.bit_depth == depth
    assert back.icc_profile == img.icc_profile
    if depth == 16 and channels == 2:  # 16-bit grey+alpha is written as RGBA 16 (no writer for LA16)
        assert back.mode == "RGBA"
        np.testing.assert_array_equal(images.to_array(back)[..., [0, 3]], raw)
        return
    assert back.mode == img.mode
    np.testing.assert_array_equal(images.to_array(back), raw)
    if channels in (2, 4):
        np.testing.assert_array_equal(back.alpha, img.alpha)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_and_keep_profile(fmt):
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 64)[None]
    rgb[..., 1] = 128
    img = images.from_array(rgb, icc_profile=_srgb_icc())
    back = images.decode(images.encode(img, fmt))
    assert back.bit_depth == 8 and back.icc_profile == img.icc_profile
    assert np.abs(images.to_array(back).astype(int) - rgb).max() <= 6


def test_rgba_alpha_survives_processing_untouched_when_written(tmp_path):
    raw = _raw(20, 30, 4, 8)
    img = images.from_array(raw)
    out = tmp_path / "x.png"
    images.save(img.with_rgb(img.rgb * 0.5), out)
    back = images.load(out)
    np.testing.assert_array_equal(images.to_array(back)[..., 3], raw[..., 3])


def test_palette_and_bilevel_images_are_converted():
    p = PILImage.new("P", (10, 8))
    p.putpalette([255, 0, 0] * 256)
    buf = io.BytesIO()
    p.save(buf, "PNG")
    img = images.decode(buf.getvalue())
    assert img.mode == "RGB" and np.allclose(img.rgb[0, 0], [1, 0, 0])
    buf = io.BytesIO()
    PILImage.new("1", (8, 8), 1).save(buf, "PNG")
    assert images.decode(buf.getvalue()).mode == "L"


def test_exif_orientation_is_applied():
    pim = PILImage.new("RGB", (40, 20), (0, 0, 0))
    pim.putpixel((0, 0), (255, 255, 255))
    exif = pim.getexif()
    exif[274] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    pim.save(buf, "JPEG", exif=exif.tobytes(), quality=100)
    img = images.decode(buf.getvalue())
    assert (img.height, img.width) == (40, 20)
    assert img.rgb[0, -1].mean() > 0.8  # top-left moved to top-right


@pytest.mark.parametrize(
    "name,error,words",
    [
        ("truncated.png", CorruptImage, "truncated"),
        ("empty.png", CorruptImage, "empty"),
        ("not_an_image.png", CorruptImage, "not an image"),
        ("bomb_30000x30000.png", ImageTooLarge, "30000"),
        ("int32.tif", UnsupportedImage, "32-bit"),
    ],
)
def test_bad_files_give_clear_typed_errors(name, error, words):
    with pytest.raises(error) as e:
        images.load(DATA / name)
    assert name in str(e.value) and words.lower() in str(e.value).lower()


def test_pixel_limit_is_configurable():
    data = images.encode(images.from_array(_raw(40, 40, 3, 8)), "PNG")
    with pytest.raises(ImageTooLarge, match="1,600"):
        images.decode(data, max_pixels=1000)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InvalidParameter, match="no such file"):
        images.load(tmp_path / "nope.png")
    with pytest.raises(InvalidParameter, match="folder"):
        images.load(tmp_path)


def test_write_atomic_leaves_no_partial_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_unknown_output_extension_is_refused():
    with pytest.raises(InvalidParameter, match=".gif"):
        images.format_for_path("x.gif")


def test_resize_keeps_range_and_size():
    rgb = np.random.default_rng(0).random((31, 47, 3), dtype=np.float32)
    out = images.resize_rgb(rgb, (62, 94))
    assert out.shape == (62, 94, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert abs(out.mean() - rgb.mean()) < 0.01
