"""PNG and JPEG structure checks that do not decode pixels."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from trainer.data.image_headers import HeaderError, jpeg_size, png_size

from .factories import png_bytes


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(*chunks: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


IHDR = _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
IDAT = _chunk(b"IDAT", zlib.compress(b"\x00" + b"\x00" * 9 + b"\x00" + b"\x00" * 9))
IEND = _chunk(b"IEND", b"")


def _jpeg(progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 9, 9)).save(buffer, "JPEG", progressive=progressive)
    return buffer.getvalue()


def test_png_size_of_a_hand_built_file():
    assert png_size(_png(IHDR, IDAT, IEND)) == (3, 2)


def test_png_size_of_pil_files():
    assert png_size(png_bytes(17, 9)) == (17, 9)
    assert png_size(png_bytes(5, 5, mode="P", color=1)) == (5, 5)
    assert png_size(png_bytes(5, 5, mode="LA", color=(1, 2))) == (5, 5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a", "not a PNG file"),
        (_png(IDAT, IEND), "PNG does not start with an IHDR chunk"),
        (
            _png(_chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 3, 2, 0, 0, 0)), IDAT, IEND),
            "PNG header is invalid (colour type 2, bit depth 3)",
        ),
        (
            _png(_chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 7, 0, 0, 0)), IDAT, IEND),
            "PNG header is invalid (colour type 7, bit depth 8)",
        ),
        (_png(IHDR, IEND), "PNG has no image data (IDAT)"),
        (_png(IHDR, IDAT), "PNG ends inside a chunk (truncated)"),
        (_png(IHDR, IDAT[:-6]), "PNG 'IDAT' chunk is cut short (truncated)"),
        (_png(IHDR, IDAT[:-1] + bytes([IDAT[-1] ^ 1]), IEND), "PNG 'IDAT' chunk fails its CRC"),
        (_png(IHDR, b"\xff\xff\xff\xff" + IDAT[4:], IEND), "PNG 'IDAT' chunk is cut short (truncated)"),
    ],
)
def test_png_refusals(data, message):
    with pytest.raises(HeaderError) as info:
        png_size(data)
    assert str(info.value) == message


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_size(progressive):
    data = _jpeg(progressive)
    assert jpeg_size(data) == ((40, 30), True)
    assert jpeg_size(data + b"\x00extra") == ((40, 30), False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG", "not a JPEG file"),
        (b"\xff\xd8\xff", "JPEG ends before its frame header (truncated)"),
        (b"\xff\xd8\x00\x00\x00\x00", "JPEG marker expected at byte 2"),
        (b"\xff\xd8\xff\xd9\x00\x00", "JPEG ends before its frame header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG marker segment is cut short (truncated)"),
        (b"\xff\xd8\xff\xc0\x00\x04\x08\x00", "JPEG frame header is too short"),
        (b"\xff\xd8\xff\xe0\x00\x01\x00\x00", "JPEG marker segment is cut short (truncated)"),
    ],
)
def test_jpeg_refusals(data, message):
    with pytest.raises(HeaderError) as info:
        jpeg_size(data)
    assert str(info.value) == message


def test_jpeg_cut_before_the_frame_header():
    data = _jpeg()
    sof = data.index(b"\xff\xc0")
    with pytest.raises(HeaderError, match="truncated"):
        jpeg_size(data[: sof + 4])
