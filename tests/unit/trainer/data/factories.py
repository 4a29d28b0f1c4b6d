"""Small factories shared by the data tests."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image


def png_bytes(width: int = 32, height: int = 24, mode: str = "RGB", color: Any = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height``: a decompression bomb's header, cheaply."""
    data = bytearray(png_bytes(1, 1))
    # Signature (8) + IHDR length (4) + type (4); width and height follow, then depth..interlace, then CRC.
    ihdr_start = 8 + 4
    struct.pack_into(">II", data, ihdr_start + 4, width, height)
    crc = zlib.crc32(bytes(data[ihdr_start : ihdr_start + 4 + 13]))
    struct.pack_into(">I", data, ihdr_start + 4 + 13, crc)
    return bytes(data)


def make_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "data_source": "mm_math",
        "images": [{"bytes": png_bytes(), "path": "images/a.png"}],
        "prompt": [{"role": "user", "content": "<image>What is 2 + 2?"}],
        "ability": "math",
        "reward_model": {
            "answer": "4",
            "ground_truth": "\\boxed{4}",
            "accuracy_ratio": 1.0,
            "format_ratio": 0.1,
            "verifier": "mathverify",
        },
        "extra_info": {"id": "row-1", "image_path": "images/a.png"},
    }
    row.update(overrides)
    return row
