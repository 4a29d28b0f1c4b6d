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

:func:`png_sizes` runs :func:`png_size`'s checks over many files at once: numpy walks
the chunk headers of every file in step, and only the CRC-32 of each chunk is left
to a loop (``zlib.crc32`` has no batch form).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# Allowed bit depths per PNG colour type (ISO/IEC 15948 table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])


_SIGNATURE = np.frombuffer(PNG_SIGNATURE, dtype=np.uint8)
_IHDR, _IDAT, _IEND = (int.from_bytes(kind, "big") for kind in (b"IHDR", b"IDAT", b"IEND"))
_IEND_CRC = zlib.crc32(b"IEND")
_DEPTH_OK = np.zeros((256, 256), dtype=bool)  # [colour type, bit depth]
for _color, _depths in _PNG_DEPTHS.items():
    _DEPTH_OK[_color, list(_depths)] = True


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


def _u32(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Big-endian 32-bit integers at ``positions`` (clipped into ``data``: callers ignore those)."""
    index = np.minimum(positions[:, None] + np.arange(4), len(data) - 1)
    b = data[index].astype(np.int64)
    return (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]


def png_sizes(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, max_chunks: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`png_size` of many files laid out in one buffer: file k is ``data[starts[k]:ends[k]]``.

    ``data`` is a uint8 array. Returns (passed, width, height): ``passed[k]`` is True when
    :func:`png_size` returns (width[k], height[k]) for file k; False when it raises, and for a
    file this does not settle (not a PNG, more than ``max_chunks`` chunks): check those one by
    one with :func:`png_size`.

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO(); Image.new("RGB", (7, 5)).save(buffer, "PNG")
    >>> files = buffer.getvalue() + b"GIF89a"
    >>> passed, width, height = png_sizes(np.frombuffer(files, np.uint8), np.array([0, len(files) - 6]),
    ...                                   np.array([len(files) - 6, len(files)]))
    >>> passed.tolist(), width.tolist(), height.tolist()
    ([True, False], [7, 0], [5, 0])
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    n = len(starts)
    passed = np.zeros(n, dtype=bool)
    width = np.zeros(n, dtype=np.int64)
    height = np.zeros(n, dtype=np.int64)
    if n == 0 or len(data) < 8 + 12:
        return passed, width, height
    last = len(data) - 1
    active = ends - starts >= 8 + 12
    active &= (data[np.minimum(starts[:, None] + np.arange(8), last)] == _SIGNATURE).all(axis=1)
    position = starts + 8
    has_data = np.zeros(n, dtype=bool)
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # owner, from, to, crc
    for step in range(max_chunks):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        start, end = position[rows], ends[rows]
        bad = start + 12 > end  # "PNG ends inside a chunk"
        length = _u32(data, start)
        kind = _u32(data, start + 4)
        data_end = start + 8 + length
        bad |= data_end + 4 > end  # "chunk is cut short"
        if step == 0:  # IHDR, 13 bytes: width, height, depth, colour, compression, filter, interlace
            bad |= (kind != _IHDR) | (length != 13)
            width[rows] = _u32(data, start + 8)
            height[rows] = _u32(data, start + 12)
            fields = data[np.minimum(start[:, None] + np.arange(16, 21), last)].astype(np.intp)
            bad |= ~_DEPTH_OK[fields[:, 1], fields[:, 0]] | (fields[:, 2] != 0) | (fields[:, 3] != 0)
            bad |= fields[:, 4] > 1
            done = np.zeros(rows.size, dtype=bool)
        else:
            has_data[rows[(kind == _IDAT) & ~bad]] = True
            done = (kind == _IEND) & ~bad
        good = ~bad
        crc = _u32(data, data_end)
        empty_end = done & (length == 0)  # an empty IEND: its CRC is that of b"IEND", known
        passed_crc = ~empty_end | (crc == _IEND_CRC)
        bad |= ~passed_crc
        good &= ~empty_end
        chunks.append((rows[good], start[good] + 4, data_end[good], crc[good]))
        done &= passed_crc
        active[rows[bad]] = False
        active[rows[done]] = False
        passed[rows[done]] = True
        position[rows] = data_end + 4
    passed &= has_data
    if chunks:
        view = memoryview(data)
        crc32 = zlib.crc32
        owners, froms, tos, crcs = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        computed = [crc32(view[first:stop]) for first, stop in zip(froms.tolist(), tos.tolist(), strict=True)]
        passed[owners[np.array(computed, dtype=np.int64) != crcs]] = False
    width[~passed] = 0
    height[~passed] = 0
    return passed, width, height
