"""Structural checks of PNG and JPEG files without decoding their pixels.

Validating an upload must keep up with reading it. Opening an image with PIL
costs tens of microseconds before a single pixel is read, more than streaming
the row itself; these parsers read only what integrity needs, in a few
microseconds for a small image:

- PNG (ISO/IEC 15948 §5): the signature, every chunk's length and CRC-32 up
  to IEND, a valid IHDR first, at least one IDAT. Truncation and any change
  to the stored bytes are caught.
- JPEG (ITU-T T.81 Annex B): the SOI marker, the marker segments up to the
  first frame header (SOFn) for the size, and the EOI marker at the end.

Compressed data that is corrupt behind valid checksums is only found by a
full decode (``check_image(..., decode=True)``).
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# Allowed bit depths per PNG colour type (ISO/IEC 15948 table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])


class HeaderError(ValueError):
    """The file's structure is broken; the message says where."""


def png_size(data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) of a PNG whose every chunk is present and passes its CRC.

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO(); Image.new("RGB", (7, 5)).save(buffer, "PNG")
    >>> png_size(buffer.getvalue())
    (7, 5)
    """
    view = memoryview(data)
    end_of_data = len(view)
    if bytes(view[:8]) != PNG_SIGNATURE:
        raise HeaderError("not a PNG file")
    position = 8
    size: tuple[int, int] | None = None
    has_data = False
    while True:
        if position + 12 > end_of_data:
            raise HeaderError("PNG ends inside a chunk (truncated)")
        length, kind = struct.unpack_from(">I4s", view, position)
        data_end = position + 8 + length
        if data_end + 4 > end_of_data:
            raise HeaderError(f"PNG {kind.decode('latin-1')!r} chunk is cut short (truncated)")
        (crc,) = struct.unpack_from(">I", view, data_end)
        if zlib.crc32(view[position + 4 : data_end]) != crc:
            raise HeaderError(f"PNG {kind.decode('latin-1')!r} chunk fails its CRC")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise HeaderError("PNG does not start with an IHDR chunk")
            width, height, depth, color, compression, filtering, interlace = struct.unpack_from(
                ">IIBBBBB", view, position + 8
            )
            if depth not in _PNG_DEPTHS.get(color, ()) or compression or filtering or interlace > 1:
                raise HeaderError(f"PNG header is invalid (colour type {color}, bit depth {depth})")
            size = (width, height)
        elif kind == b"IDAT":
            has_data = True
        elif kind == b"IEND":
            break
        position = data_end + 4
    if not has_data:
        raise HeaderError("PNG has no image data (IDAT)")
    return size


def jpeg_size(data: bytes | memoryview) -> tuple[tuple[int, int], bool]:
    """((width, height), ends_with_eoi) of a JPEG, from its first frame header.

    ``ends_with_eoi`` is False for a file cut short, and for a whole file with
    bytes after its end marker (some cameras append data): the caller decides.
    """
    view = memoryview(data)
    end_of_data = len(view)
    if bytes(view[:2]) != JPEG_SOI:
        raise HeaderError("not a JPEG file")
    position = 2
    while True:
        if position + 4 > end_of_data:
            raise HeaderError("JPEG ends before its frame header (truncated)")
        if view[position] != 0xFF:
            raise HeaderError(f"JPEG marker expected at byte {position}")
        while position < end_of_data and view[position] == 0xFF:
            position += 1  # fill bytes
        if position >= end_of_data:
            raise HeaderError("JPEG ends before its frame header (truncated)")
        marker = view[position]
        position += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise HeaderError("JPEG ends before its frame header")
        if position + 2 > end_of_data:
            raise HeaderError("JPEG ends inside a marker segment (truncated)")
        (length,) = struct.unpack_from(">H", view, position)
        if length < 2 or position + length > end_of_data:
            raise HeaderError("JPEG marker segment is cut short (truncated)")
        if marker in _JPEG_SOF:
            if length < 7:
                raise HeaderError("JPEG frame header is too short")
            height, width = struct.unpack_from(">HH", view, position + 3)
            return (width, height), bytes(view[-2:]) == JPEG_EOI
        position += length
