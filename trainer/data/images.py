"""Image decoding and Qwen2-VL-style resizing.

Images arrive as encoded bytes (PNG, JPEG, ...). Decoding is guarded against
decompression bombs: the pixel count is read from the header and refused
before any pixel is decoded, and PIL's own bomb error and warning are turned
into :class:`ImageError`.

Resizing follows Qwen2-VL's ``smart_resize`` (Qwen2-VL paper, arXiv 2409.12191,
§2.1: 14-pixel patches merged 2 × 2, so each side must be a multiple of 28)
rewritten here with one addition: the result is guaranteed to lie inside
``[min_pixels, max_pixels]``, which the original does not promise for extreme
aspect ratios.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

from trainer.data.image_headers import JPEG_SOI, PNG_SIGNATURE, HeaderError, jpeg_size, png_size

# Qwen2-VL: patch 14 × spatial merge 2.
PATCH_FACTOR = 28
# Qwen2-VL refuses aspect ratios above 200 (its processor raises).
MAX_ASPECT_RATIO = 200
# 40 megapixels: a 8000 × 5000 photograph passes; PIL's own bomb limit is ~89 megapixels.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Formats accepted from uploads; anything else is refused before a decoder runs.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class ImageError(ValueError):
    """Bytes that are not an acceptable image; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An RGB image ready for the processor, with the size the model sees."""

    image: Image.Image
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the ``image_size`` the detection reward expects."""
        return (self.width, self.height)


def _check_type(data: object) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageError(f"image bytes must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("image bytes are empty")


def _check_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image on its declared size alone, before any pixel is decoded."""
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {pixels} pixels; the limit is {max_pixels}"
            " (decompression bombs are refused): downscale it"
        )
    # PIL warns above its limit and refuses twice that; anything it would warn about is refused here.
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        raise ImageError(
            f"image refused as a decompression bomb ({width}x{height} = {pixels} pixels;"
            f" PIL's limit is {Image.MAX_IMAGE_PIXELS})"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"image is {width}x{height}, aspect ratio {ratio:.0f}; the limit is {MAX_ASPECT_RATIO}"
        )


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open ``data`` lazily with PIL and refuse it on its header alone when too large."""
    _check_type(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"not a decodable image ({exc})") from None
    _check_size(image.width, image.height, max_pixels)
    return image


def _load(image: Image.Image) -> None:
    """Decode every pixel, mapping decoder failures to :class:`ImageError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"image data is corrupt or truncated ({exc})") from None


def check_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, decode: bool = False
) -> tuple[int, int]:
    """Check that ``data`` is a usable image and return its (width, height); raise :class:`ImageError` if not.

        Always checked: the format, the declared size against ``max_pixels`` and
        PIL's decompression-bomb limit, the aspect ratio. Then, by default, the
        file's integrity without decoding pixels (PNG: every chunk's CRC; JPEG:
        the marker segments and the end marker, see
        :mod:`trainer.data.image_headers`), a few microseconds; other formats, and
        a JPEG with bytes after its end marker, are decoded. ``decode=True``
        decodes every pixel with PIL, which also finds compressed data that is
        corrupt behind valid checksums, at the price of a full decode (about
        0.5 ms for a 224-pixel PNG, milliseconds for a photograph).

        >>> import io
        >>> from PIL import Image

    from trainer.data.image_headers import JPEG_SOI, PNG_SIGNATURE, HeaderError, jpeg_size, png_size
        >>> buffer = io.BytesIO(); Image.new("RGB", (30, 20)).save(buffer, "PNG")
        >>> check_image(buffer.getvalue())
        (30, 20)
    """
    _check_type(data)
    if not decode:
        head = bytes(data[:8])
        try:
            if head == PNG_SIGNATURE:
                width, height = png_size(data)
                _check_size(width, height, max_pixels)
                return width, height
            if head.startswith(JPEG_SOI):
                (width, height), whole = jpeg_size(data)
                _check_size(width, height, max_pixels)
                if whole:
                    return width, height
        except HeaderError as exc:
            raise ImageError(f"image data is corrupt or truncated ({exc})") from None
    image = _open_checked(data, max_pixels)
    _load(image)
    return image.size


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode ``data`` into an RGB image; transparent pixels are composed on white.

    Composing on white (rather than dropping alpha, which turns transparent
    pixels black) keeps line drawings with transparent backgrounds legible.
    """
    image = _open_checked(data, max_pixels)
    _load(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def smart_resize(
    height: int,
    width: int,
    *,
    min_pixels: int,
    max_pixels: int,
    factor: int = PATCH_FACTOR,
) -> tuple[int, int]:
    """Return (height, width), each a multiple of ``factor``, with area in [min_pixels, max_pixels].

    The aspect ratio is kept as closely as the grid allows: both sides are
    rounded to the nearest multiple of ``factor``; if the area is then above
    ``max_pixels`` both sides are scaled by ``sqrt(h·w / max_pixels)`` and
    floored, if below ``min_pixels`` scaled by ``sqrt(min_pixels / (h·w))`` and
    ceiled (Qwen2-VL ``smart_resize``). A final step trims the longer side or
    grows the shorter one by ``factor`` until the area is inside the range.

    >>> smart_resize(224, 224, min_pixels=56 * 56, max_pixels=448 * 448)
    (224, 224)
    >>> smart_resize(1000, 500, min_pixels=28 * 28, max_pixels=224 * 224)
    (308, 140)
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        ratio = max(height, width) / min(height, width)
        raise ValueError(f"aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio:.0f}")
    if min_pixels < factor * factor:
        raise ValueError(f"min_pixels must be at least {factor * factor} (one {factor}x{factor} cell)")
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels ({max_pixels}) must be at least min_pixels ({min_pixels})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    # Rounding to the grid can leave the area just outside the range: step one side at a time.
    while h_bar * w_bar > max_pixels and max(h_bar, w_bar) > factor:
        if h_bar >= w_bar:
            h_bar -= factor
        else:
            w_bar -= factor
    while h_bar * w_bar < min_pixels:
        if h_bar <= w_bar:
            h_bar += factor
        else:
            w_bar += factor
    if h_bar * w_bar > max_pixels:
        raise ValueError(
            f"no {factor}-multiple size of {width}x{height} has between {min_pixels} and {max_pixels} pixels;"
            " widen the pixel range"
        )
    return h_bar, w_bar


def resize_image(image: Image.Image, *, min_pixels: int, max_pixels: int) -> PreparedImage:
    """Resize an RGB image onto the 28-pixel grid inside the pixel range (bicubic, as Qwen2-VL)."""
    height, width = smart_resize(image.height, image.width, min_pixels=min_pixels, max_pixels=max_pixels)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return PreparedImage(image=image, width=width, height=height)


def prepare_image(
    data: bytes,
    *,
    min_pixels: int,
    max_pixels: int,
    max_decode_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> PreparedImage:
    """Decode ``data`` to RGB and resize it for the model; ``.size`` is the final (width, height)."""
    return resize_image(
        decode_image(data, max_pixels=max_decode_pixels), min_pixels=min_pixels, max_pixels=max_pixels
    )
