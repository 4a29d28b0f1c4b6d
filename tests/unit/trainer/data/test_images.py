"""Image decoding guards and the 28-pixel-grid resize."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from trainer.data.images import (
    ImageError,
    check_image,
    decode_image,
    prepare_image,
    resize_image,
    smart_resize,
)

from .factories import png_bytes, png_claiming_size


@pytest.mark.parametrize(
    ("height", "width", "min_pixels", "max_pixels", "expected"),
    [
        # already on the grid and in range: unchanged
        (224, 224, 56 * 56, 448 * 448, (224, 224)),
        # rounded: 1008x504 = 508032 > 50176; beta = sqrt(500000 / 50176) = 3.157;
        # floor(1000 / 3.157 / 28) = 11 -> 308, floor(500 / 3.157 / 28) = 5 -> 140
        (1000, 500, 28 * 28, 224 * 224, (308, 140)),
        # too small: 28x28 = 784 < 3136; beta = sqrt(3136 / 600) = 2.286;
        # ceil(20 * 2.286 / 28) = 2 -> 56, ceil(30 * 2.286 / 28) = 3 -> 84
        (20, 30, 56 * 56, 1_000_000, (56, 84)),
        # round(300 / 28) = 11 -> 308, round(400 / 28) = 14 -> 392; 120736 in range
        (300, 400, 28 * 28, 1_000_000, (308, 392)),
        # ceil gives 84x84 = 7056 > 5000 (Qwen2-VL's own resize would stop here); trimming the
        # height once gives 56x84 = 4704, inside [3200, 5000]
        (50, 50, 3200, 5000, (56, 84)),
    ],
)
def test_smart_resize_table(height, width, min_pixels, max_pixels, expected):
    assert smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 784, 1000), "image size must be positive, got 10x0"),
        ((10, 2100, 784, 10**6), "aspect ratio must be at most 200, got 210"),
        ((10, 10, 100, 10**6), "min_pixels must be at least 784 (one 28x28 cell)"),
        ((10, 10, 5000, 4000), "max_pixels (4000) must be at least min_pixels (5000)"),
        # multiples of 28 have areas 784 * k: 3136 and 3920 bracket [3200, 3300]
        (
            (50, 50, 3200, 3300),
            "no 28-multiple size of 50x50 has between 3200 and 3300 pixels; widen the pixel range",
        ),
    ],
)
def test_smart_resize_refuses(args, message):
    height, width, min_pixels, max_pixels = args
    with pytest.raises(ValueError) as info:
        smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    assert str(info.value) == message


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smart_resize_grid_and_range(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        height, width = rng.randint(1, 5000), rng.randint(1, 5000)
        if max(height, width) / min(height, width) > 200:
            continue
        min_pixels = rng.randint(784, 600_000)
        max_pixels = rng.randint(2 * min_pixels, 8 * min_pixels)
        h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
        assert h % 28 == 0 and w % 28 == 0, (height, width, h, w)
        assert min_pixels <= h * w <= max_pixels, (height, width, min_pixels, max_pixels, h, w)


def test_prepare_image_resizes_and_reports_size():
    prepared = prepare_image(png_bytes(300, 100), min_pixels=28 * 28, max_pixels=112 * 112)
    # round: 112x308 = 34496 > 12544; beta = sqrt(30000 / 12544) = 1.546;
    # floor(100 / 1.546 / 28) = 2 -> 56, floor(300 / 1.546 / 28) = 6 -> 168
    assert prepared.size == (168, 56)
    assert prepared.image.size == (168, 56)
    assert prepared.image.mode == "RGB"


def test_resize_keeps_an_image_already_on_the_grid():
    image = Image.new("RGB", (224, 112))
    prepared = resize_image(image, min_pixels=784, max_pixels=10**6)
    assert prepared.image is image
    assert prepared.size == (224, 112)


def test_decode_composes_transparency_on_white():
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(buffer, "PNG")
    image = decode_image(buffer.getvalue())
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_decode_converts_grey_and_palette():
    assert decode_image(png_bytes(5, 5, mode="L", color=7)).getpixel((0, 0)) == (7, 7, 7)
    assert decode_image(png_bytes(5, 5, mode="P", color=3)).mode == "RGB"


def test_check_image_returns_size():
    assert check_image(png_bytes(30, 20)) == (30, 20)


def _truncated_png() -> bytes:
    data = png_bytes(64, 64, color=(1, 2, 3))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"", {}, "image bytes are empty"),
        (b"GIF89a but not really", {}, "not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF"),
        (b"%PDF-1.4 hello", {}, "not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF"),
        (
            png_claiming_size(7000, 7000),
            {},
            "image is 7000x7000 = 49000000 pixels; the limit is 40000000 (decompression bombs are refused):"
            " downscale it",
        ),
        (
            png_claiming_size(100, 100),
            {"max_pixels": 5000},
            "image is 100x100 = 10000 pixels; the limit is 5000 (decompression bombs are refused):"
            " downscale it",
        ),
        (png_claiming_size(1, 1000), {}, "image is 1x1000, aspect ratio 1000; the limit is 200"),
    ],
)
def test_check_image_refuses(data, kwargs, message):
    with pytest.raises(ImageError) as info:
        check_image(data, **kwargs)
    assert str(info.value) == message


def test_check_image_refuses_non_bytes():
    with pytest.raises(ImageError, match="^image bytes must be bytes, got str$"):
        check_image("not bytes")  # type: ignore[arg-type]


def test_pil_bomb_error_is_caught():
    # 20000 x 20000 = 4e8 pixels is past PIL's own error threshold (2 x 89478485).
    with pytest.raises(ImageError, match="^image refused as a decompression bomb"):
        check_image(png_claiming_size(20000, 20000), max_pixels=10**12)


def test_pil_bomb_warning_is_an_error():
    # 10000 x 10000 = 1e8 pixels: above PIL's warning threshold (89478485), below its error one.
    with pytest.raises(ImageError, match="^image refused as a decompression bomb"):
        check_image(png_claiming_size(10000, 10000), max_pixels=10**12)


def test_truncated_image_is_refused():
    with pytest.raises(ImageError, match=r"^image data is corrupt or truncated \("):
        check_image(_truncated_png())


def test_header_without_pixels_needs_a_full_decode():
    # The header says 100x100 but the data holds a single pixel, behind valid checksums:
    # the integrity check passes, only decoding every pixel finds it.
    data = png_claiming_size(100, 100)
    assert check_image(data) == (100, 100)
    with pytest.raises(ImageError, match=r"^image data is corrupt or truncated \("):
        check_image(data, decode=True)


def test_png_with_a_bad_checksum_is_refused():
    data = bytearray(png_bytes(16, 16))
    data[-20] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    with pytest.raises(ImageError, match=r"^image data is corrupt or truncated \("):
        check_image(bytes(data))


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_jpeg_checks():
    data = _jpeg()
    assert check_image(data) == (64, 48)
    assert check_image(data + b"trailing bytes after the end marker") == (64, 48)  # decoded instead
    with pytest.raises(ImageError, match=r"^image data is corrupt or truncated \("):
        check_image(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_decoded(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(buffer, fmt)
    data = buffer.getvalue()
    assert check_image(data) == (20, 10)
    with pytest.raises(ImageError):
        check_image(data[: len(data) // 2])
