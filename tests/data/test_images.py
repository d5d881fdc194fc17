import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from valence.data import images
from valence.data.images import decode, load_image, load_images
from valence.errors import PipelineError

RED, BLUE = (255, 0, 0), (0, 0, 255)




def save(tmp_path, image, name, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def near(pixel, colour, tol=40):
    return np.abs(np.asarray(pixel, dtype=int) - np.asarray(colour)).max() <= tol


def rgba_half_transparent():
    """Left half fully transparent black, right half opaque green."""
    a = np.zeros((10, 20, 4), dtype=np.uint8)
    a[:, 10:] = (0, 200, 0, 255)
    return Image.fromarray(a, "RGBA")


# (file name, image, save kwargs, expected colour at the left edge, at the right edge)
FORMATS = {
    "jpeg": ("a.jpg", Image.new("RGB", (20, 10), (200, 30, 40)), {"quality": 95}, (200, 30, 40), (200, 30, 40)),
    "png": ("a.png", Image.new("RGB", (20, 10), (10, 120, 250)), {}, (10, 120, 250), (10, 120, 250)),
    "gray_L": ("a.png", Image.new("L", (20, 10), 77), {}, (77,) * 3, (77,) * 3),
    "png16_midgrey": ("a.png", Image.fromarray(np.full((10, 20), 32896, dtype=np.uint16)), {}, (128,) * 3, (128,) * 3),
    "rgba": ("a.png", rgba_half_transparent(), {}, (255, 255, 255), (0, 200, 0)),
    "palette": ("a.png", Image.new("RGB", (20, 10), (250, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE),
                {}, (250, 200, 0), (250, 200, 0)),
    "cmyk_jpeg": ("a.jpg", Image.new("CMYK", (20, 10), (0, 255, 255, 0)), {"quality": 95}, RED, RED),
}


@pytest.mark.parametrize("name", FORMATS)
def test_load_image_modes(tmp_path, name):
    filename, image, kwargs, left, right = FORMATS[name]
    path = save(tmp_path, image, filename, **kwargs)
    if name == "png16_midgrey":
        assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    out = load_image(path, 12, 16)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    assert near(out[6, 1], left, tol=8), out[6, 1]
    assert near(out[6, -2], right, tol=8), out[6, -2]


def test_16bit_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 20).astype(np.uint16)[None].repeat(4, axis=0)
    out = np.asarray(decode(save(tmp_path, Image.fromarray(ramp), "r.png")))[..., 0].astype(int)
    assert np.abs(out - ramp / 257.0).max() <= 1  # linear scaling: no value saturates early
    assert out[0, 0] == 0 and out[0, -1] == 255


def test_palette_transparency_becomes_white(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    path = save(tmp_path, image, "t.png", transparency=0)
    out = np.asarray(decode(path))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, -1]) == (10, 20, 30)


@pytest.mark.parametrize("orientation, top, bottom", [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_orientation_applied(tmp_path, orientation, top, bottom):
    a = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high: left half red, right half blue
    a[:, :20], a[:, 20:] = RED, BLUE
    image = Image.fromarray(a)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = save(tmp_path, image, "o.jpg", exif=exif, quality=95)
    upright = decode(path)
    assert upright.size == (20, 40)  # width and height swapped
    px = np.asarray(upright)
    assert near(px[3, 10], top) and near(px[-4, 10], bottom)
    out = load_image(path, 40, 20)
    assert near(out[3, 10], top) and near(out[-4, 10], bottom)


def broken_files(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image\n")


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.jpg", "notes.jpg"])
def test_unreadable_file_is_pipeline_error(tmp_path, name):
    broken_files(tmp_path)
    path = tmp_path / name
    with pytest.raises(PipelineError) as err:
        load_image(path, 8, 8)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError):
        decode(path)


@pytest.mark.parametrize("side", [40, 100])  # 1600 px: Pillow's warning; 10000 px: its error
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = save(tmp_path, Image.new("RGB", (side, side)), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="pixels"):
        decode(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000_000)
    assert decode(path).size == (side, side)


def header_only_png(width, height):
    """A 1×1 PNG whose header claims width × height: decode judges the size before reading a pixel, and the
    missing pixels make it a truncated file, so the test never fills 50 million pixels."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + png[24:29]  # new size; bit depth, colour type… kept
    png[16:29], png[29:33] = ihdr, struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


def test_the_pixel_limit_is_50_million():
    # the README's limit, set by valence.data.images itself (Pillow's default is about 89 million)
    with pytest.raises(images.TooManyPixels, match="more than 50000000 pixels"):
        decode(io.BytesIO(header_only_png(10_000, 5_001)))
    with pytest.raises(ValueError) as err:  # exactly 50 million: refused as truncated, not for its size
        decode(io.BytesIO(header_only_png(10_000, 5_000)))
    assert not isinstance(err.value, images.TooManyPixels) and "truncated" in str(err.value)


def test_load_images_stacks_in_order(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (90, 90, 90)]
    paths = [save(tmp_path, Image.new("RGB", (7 + i, 5), c), f"{i}.png") for i, c in enumerate(colours)]
    batch = load_images(paths[::-1], 6, 9)
    assert batch.shape == (4, 6, 9, 3) and batch.dtype == np.uint8
    for got, colour in zip(batch, colours[::-1]):
        assert (got == colour).all()
