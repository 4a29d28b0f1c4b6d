"""Validation of a whole parquet record batch at once, with :func:`validate_sample`'s verdicts.

Turning a row into Python dicts costs more than reading it (pyarrow decodes a batch
in a fraction of the time ``to_pylist`` takes), so an upload is checked column by
column: ``pyarrow.compute`` and numpy clear, for a whole batch at a time, what can be
cleared without Python objects (nulls, types, lengths, control characters,
``<image>`` markers against image counts, roles), and only two checks stay per row:

- each image's integrity (:func:`trainer.data.images.check_image`), on a view of the
  arrow buffer (no copy);
- the ``reward_model`` verdict, once per distinct ``reward_model`` of the batch (rows
  are grouped by the dictionary codes of its leaves) and cached by content across
  batches (``schema._reward_model_errors``).

A row that a columnar check cannot clear is turned into the dict
:func:`trainer.data.reader.iter_samples` yields and checked by :func:`validate_sample`
itself. The columnar checks are a filter: they only decide which rows need that, so
every verdict (errors, fields, messages, their order) is :func:`validate_sample`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from trainer.data.image_headers import png_sizes
from trainer.data.images import DEFAULT_MAX_IMAGE_PIXELS, MAX_ASPECT_RATIO, ImageError, check_image
from trainer.data.reader import batch_to_rows
from trainer.data.schema import (
    IMAGE_MARKER,
    MAX_ABILITY_CHARS,
    MAX_ID_CHARS,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SOURCE_CHARS,
    ROLES,
    ImageResolver,
    SampleError,
    _name_errors,
    _reward_model_errors,
    drop_nulls,
    validate_sample,
)

REQUIRED = ("data_source", "images", "prompt", "ability", "reward_model")
# Leaf types whose values dictionary_encode can group (equal codes, equal Python values).
_GROUPABLE = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_floating,
)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _nulls(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return array.is_null().to_numpy(zero_copy_only=False)


def _offsets(array: pa.Array) -> np.ndarray:
    """A list array's offsets: row i's items are ``array.values[o[i]:o[i + 1]]``.

    ``values``, not ``flatten()``: a null row may cover items (Arrow allows it), which
    ``flatten()`` leaves out, and the offsets would no longer match it.
    """
    return array.offsets.to_numpy().astype(np.int64)


def _per_row_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of each row's items (rows may be empty)."""
    total = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return total[offsets[1:]] - total[offsets[:-1]]


def _name_suspects(column: pa.Array, limit: int, field: str) -> np.ndarray:
    """Rows whose name (data_source, ability) ``_name_errors`` would not accept, null rows aside."""
    if not _is_string(column.type):
        return ~_nulls(column)  # a non-null value of another type is an error
    encoded = pc.dictionary_encode(column)
    bad = [k for k, value in enumerate(encoded.dictionary.to_pylist()) if _name_errors(field, value, limit)]
    if not bad:
        return np.zeros(len(column), dtype=bool)
    return np.isin(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), bad)


def _value_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A string or binary array's data as uint8 and where each value lies in it (start, end).

    A null value's range is whatever its offsets say (often empty): callers look at nulls apart.
    """
    if len(array) == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, offsets_buffer, data_buffer = array.buffers()
    width = (
        np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    )
    bounds = np.frombuffer(offsets_buffer, dtype=width)[array.offset : array.offset + len(array) + 1]
    bounds = bounds.astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data, bounds[:-1], bounds[1:]


def _owner(positions: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The value whose range holds each byte position (ranges are consecutive; an empty range
    shares its start with the next value, which ``side="right"`` picks)."""
    return np.searchsorted(starts, positions, side="right") - 1


def _has_byte(array: pa.Array, byte: int) -> np.ndarray:
    """Values of a string array holding ``byte`` (0: a NUL character; UTF-8 has no other encoding
    of it). Null values are left to the caller."""
    data, starts, ends = _value_bytes(array)
    found = np.zeros(len(array), dtype=bool)
    if len(array) and ends[-1] > starts[0]:
        positions = np.flatnonzero(data[starts[0] : ends[-1]] == byte) + starts[0]
        if positions.size:
            owner = _owner(positions, starts)
            found[owner[positions < ends[owner]]] = True
    return found


_MARKER = np.frombuffer(IMAGE_MARKER.encode(), dtype=np.uint8)


def _marker_counts(array: pa.Array) -> np.ndarray:
    """``value.count("<image>")`` of each value of a string array (0 for nulls): the marker's
    first byte located with numpy, the rest compared by gathering. Occurrences cannot overlap
    ("<" opens the marker and occurs nowhere else in it)."""
    data, starts, ends = _value_bytes(array)
    counts = np.zeros(len(array), dtype=np.int64)
    if len(array) == 0 or ends[-1] <= starts[0]:
        return counts
    low, high = starts[0], ends[-1]
    positions = np.flatnonzero(data[low:high] == _MARKER[0]) + low
    if positions.size:
        width = len(_MARKER)
        window = data[np.minimum(positions[:, None] + np.arange(width), high - 1)]
        positions = positions[(window == _MARKER).all(axis=1)]
        owner = _owner(positions, starts)
        inside = positions + width <= ends[owner]
        counts += np.bincount(owner[inside], minlength=len(array))
    counts[_nulls(array)] = 0
    return counts


def _prompt_suspects(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows whose prompt needs the row check, and each row's ``<image>`` count (None: unknown)."""
    n = len(column)
    t = column.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return np.ones(n, dtype=bool), None
    fields = {t.value_type.field(i).name: t.value_type.field(i).type for i in range(t.value_type.num_fields)}
    if not (_is_string(fields.get("role", pa.null())) and _is_string(fields.get("content", pa.null()))):
        return np.ones(n, dtype=bool), None
    offsets = _offsets(column)
    suspect = np.diff(offsets) == 0  # "must hold at least one message" (null rows are caught as required)
    messages = column.values
    children = dict(zip((f.name for f in messages.type), messages.flatten(), strict=True))
    role, content = children["role"], children["content"]
    bad_message = _nulls(messages) | _nulls(content) | _has_byte(content, 0)
    roles = pc.dictionary_encode(role)
    known = roles.dictionary.to_pylist()
    codes = roles.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    bad_message |= ~np.isin(codes, [k for k, name in enumerate(known) if name in ROLES])  # null: -1
    is_user = np.isin(codes, [k for k, name in enumerate(known) if name == "user"])
    _, starts, ends = _value_bytes(content)
    size = np.where(_nulls(content), 0, ends - starts)  # bytes ≥ characters: a safe bound
    suspect |= _per_row_sum(bad_message, offsets) > 0
    suspect |= _per_row_sum(size, offsets) > MAX_PROMPT_CHARS
    suspect |= _per_row_sum(is_user, offsets) == 0
    return suspect, _per_row_sum(_marker_counts(content), offsets)


def _extra_info_suspects(column: pa.Array) -> np.ndarray:
    """Rows whose extra_info.id or extra_info.image_path ``_extra_info_errors`` would not accept."""
    n = len(column)
    if pa.types.is_null(column.type):
        return np.zeros(n, dtype=bool)
    if not pa.types.is_struct(column.type):
        return ~_nulls(column)
    suspect = np.zeros(n, dtype=bool)
    for field, child in zip(column.type, column.flatten(), strict=True):
        if field.name not in ("id", "image_path"):
            continue
        if not _is_string(field.type):
            suspect |= ~_nulls(child)  # any value of another type is looked at
            continue
        _, starts, ends = _value_bytes(child)
        suspect |= (ends - starts > MAX_ID_CHARS) & ~_nulls(child)  # bytes ≥ characters
        suspect |= _has_byte(child, 0)
    return suspect


def _leaves(array: pa.Array) -> Iterator[pa.Array]:
    """The leaf arrays of a (nested) struct array, parent nulls merged into each."""
    if pa.types.is_struct(array.type):
        for child in array.flatten():
            yield from _leaves(child)
    else:
        yield array


# reward_model verdicts by (struct type, leaf values): a batch's distinct reward_models are
# looked up here without building their dicts; a miss goes through schema._reward_model_errors.
_VERDICTS: dict[tuple, tuple[SampleError, ...]] = {}  # (struct type, *leaf values) -> errors
_VERDICTS_SIZE = 8192
_VERDICTS_MAX_KEY = 4096  # characters of text in a key, at most
_VERDICTS_LOCK = threading.Lock()


def _reward_model_verdicts(column: pa.Array) -> tuple[np.ndarray, list[tuple[SampleError, ...]]] | None:
    """Each row's group of equal reward_model content and each group's errors; None when a leaf
    type cannot be grouped (then every row is checked on its own)."""
    if not pa.types.is_struct(column.type):
        return None
    n = len(column)
    codes: list[np.ndarray] = []  # per leaf: dictionary code of each row, -1 for null
    values: list[list] = []  # per leaf: the dictionary, then None (what code -1 reads)
    for leaf in _leaves(column):
        if pa.types.is_null(leaf.type):
            continue  # every value null: the same in every row
        if not any(test(leaf.type) for test in _GROUPABLE):
            return None
        encoded = pc.dictionary_encode(leaf)
        indices = encoded.indices
        codes.append((indices.fill_null(-1) if indices.null_count else indices).to_numpy())
        values.append([*encoded.dictionary.to_pylist(), None])
    codes.append(_nulls(column).astype(np.int8))  # a null struct is not an all-null one
    values.append([False, True])
    key = np.zeros(n, dtype=np.int64)
    span = 1  # key < span
    for code, known in zip(codes, values, strict=True):
        card = len(known)
        if span * card >= 2**62:  # renumber densely before the mixed-radix key could overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            span = int(key.max()) + 1
        key = key * card + (code + 1)  # in [0, card)
        span *= card
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    verdicts = []
    type_key = str(column.type)
    for row in first.tolist():
        content = (type_key, *(known[code[row]] for code, known in zip(codes, values, strict=True)))
        verdict = _VERDICTS.get(content)
        if verdict is None:
            verdict = tuple(_reward_model_errors(drop_nulls(column[row].as_py())))
            size = sum(len(value) for value in content if isinstance(value, str | bytes))
            if size <= _VERDICTS_MAX_KEY:  # long ground truths are not kept (memory)
                with _VERDICTS_LOCK:
                    if len(_VERDICTS) >= _VERDICTS_SIZE:
                        _VERDICTS.pop(next(iter(_VERDICTS)))
                    _VERDICTS[content] = verdict
        verdicts.append(verdict)
    return group.reshape(-1), verdicts


def _image_bytes(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Where each image's bytes are: (row offsets into the images, data as uint8, start and end
    of each image in it; -1 for an image without bytes), or None when the column is not a list
    of {bytes, path} structs with binary bytes."""
    t = column.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return None
    items = column.values
    names = [f.name for f in items.type]
    if "bytes" not in names or not _is_binary(items.type.field("bytes").type):
        return None
    data = items.flatten()[names.index("bytes")]  # parent (struct) nulls merged
    buffer, starts, ends = _value_bytes(data)
    if data.null_count:
        missing = _nulls(data)
        starts = np.where(missing, -1, starts)
        ends = np.where(missing, -1, ends)
    return _offsets(column), buffer, starts, ends


def _image_errors(
    column: pa.Array, suspect: np.ndarray, *, decode: bool, max_pixels: int
) -> dict[int, list[SampleError]] | None:
    """``check_image`` errors of the images of the rows not in ``suspect``; a row with an image
    given by path only is added to ``suspect``. None when the column's layout is not bytes."""
    located = _image_bytes(column)
    if located is None:
        return None
    offsets, data, starts, ends = located
    row_of = np.full(len(starts), -1, dtype=np.int64)  # image -> row (-1: outside the batch)
    row_of[offsets[0] : offsets[-1]] = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    inside = row_of >= 0
    wanted = inside & ~suspect[row_of]
    suspect[row_of[wanted & (starts < 0)]] = True  # a path without bytes: the resolver's business
    wanted &= ~suspect[row_of]
    settled = np.zeros(len(starts), dtype=bool)
    if not decode:
        # PNG structure of every image at once; sizes within _check_size's limits settle it.
        passed, width, height = png_sizes(data, np.where(wanted, starts, 0), np.where(wanted, ends, 0))
        small, large = np.minimum(width, height), np.maximum(width, height)
        pixels = width * height
        settled = passed & wanted & (small >= 1) & (large <= 2**31) & (pixels <= max_pixels)
        settled &= large <= MAX_ASPECT_RATIO * small
        if Image.MAX_IMAGE_PIXELS is not None:
            settled &= pixels <= Image.MAX_IMAGE_PIXELS
    errors: dict[int, list[SampleError]] = {}
    view = memoryview(data)
    left = np.flatnonzero(wanted & ~settled)  # not a PNG settled above: one by one
    for row, start, end, index in zip(
        row_of[left].tolist(),
        starts[left].tolist(),
        ends[left].tolist(),
        (left - offsets[row_of[left]]).tolist(),
        strict=True,
    ):
        try:
            check_image(view[start:end], max_pixels=max_pixels, decode=decode)
        except ImageError as exc:
            errors.setdefault(row, []).append(SampleError(f"images[{index}]", str(exc)))
    return errors


def batch_errors(
    batch: pa.RecordBatch,
    *,
    check_images: bool = True,
    decode_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    resolve_image: ImageResolver | None = None,
) -> dict[int, list[SampleError]]:
    """The errors of each invalid row of ``batch`` (0-based row → errors); valid rows are absent.

    Equal, row for row, to ``validate_sample(row, ...)`` on the rows
    :func:`trainer.data.reader.iter_samples` yields for this batch (same keyword arguments).
    """
    n = batch.num_rows
    names = batch.schema.names
    if n == 0:
        return {}
    suspect = np.zeros(n, dtype=bool)
    try:
        # Parquet readers do not check that strings are UTF-8; the checks below read their bytes.
        batch.validate(full=True)
    except pa.ArrowInvalid:
        suspect[:] = True  # read the slow way, which fails where iter_samples fails
        return _row_errors(batch, suspect, {}, check_images, decode_images, max_image_pixels, resolve_image)
    for field in REQUIRED:
        if field not in names:
            suspect[:] = True
            return _row_errors(
                batch, suspect, {}, check_images, decode_images, max_image_pixels, resolve_image
            )
        suspect |= _nulls(batch.column(field))
    suspect |= _name_suspects(batch.column("data_source"), MAX_SOURCE_CHARS, "data_source")
    suspect |= _name_suspects(batch.column("ability"), MAX_ABILITY_CHARS, "ability")
    prompt_suspect, markers = _prompt_suspects(batch.column("prompt"))
    suspect |= prompt_suspect
    if "extra_info" in names:
        suspect |= _extra_info_suspects(batch.column("extra_info"))

    images = batch.column("images")
    t = images.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        suspect[:] = True
    else:
        counts = np.diff(_offsets(images))
        suspect |= counts > MAX_IMAGES
        if markers is not None:
            suspect |= markers != counts
        items = images.values
        if len(items):
            # A null entry is an error; without check_images a non-null struct or string passes,
            # an entry of any other type does not.
            if pa.types.is_struct(t.value_type) or _is_string(t.value_type):
                suspect |= _per_row_sum(_nulls(items), _offsets(images)) > 0
            else:
                suspect |= counts > 0

    errors: dict[int, list[SampleError]] = {}
    if check_images and not suspect.all():
        found = _image_errors(images, suspect, decode=decode_images, max_pixels=max_image_pixels)
        if found is None:
            suspect[:] = True
        else:
            errors = found

    grouped = _reward_model_verdicts(batch.column("reward_model"))
    if grouped is None:
        suspect[:] = True
    else:
        group, verdicts = grouped
        for g, verdict in enumerate(verdicts):
            if verdict:
                for row in np.flatnonzero((group == g) & ~suspect).tolist():
                    errors.setdefault(row, []).extend(verdict)
    return _row_errors(batch, suspect, errors, check_images, decode_images, max_image_pixels, resolve_image)


def _row_errors(
    batch: pa.RecordBatch,
    suspect: np.ndarray,
    errors: dict[int, list[SampleError]],
    check_images: bool,
    decode_images: bool,
    max_image_pixels: int,
    resolve_image: ImageResolver | None,
) -> dict[int, list[SampleError]]:
    """``errors`` completed with :func:`validate_sample` on every suspect row, in row order."""
    rows = np.flatnonzero(suspect)
    if rows.size:
        samples = batch_to_rows(batch.take(pa.array(rows)))
        for row, sample in zip(rows.tolist(), samples, strict=True):
            found = validate_sample(
                sample,
                check_images=check_images,
                decode_images=decode_images,
                max_image_pixels=max_image_pixels,
                resolve_image=resolve_image,
            )
            if found:
                errors[row] = found
            else:
                errors.pop(row, None)
    return {row: errors[row] for row in sorted(errors)}
