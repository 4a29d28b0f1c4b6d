"""Streaming readers and writers of sample files (parquet, JSONL, JSONL.gz) through fsspec.

Files are never loaded whole: parquet is read by record batches (memory is
bounded by one row group), JSONL line by line. Every failure raises
:class:`DataFormatError` naming the file and the line or rows concerned.

The parquet layout is Orsta-Data-47k's (the V-Triune data release): images as
``list<struct<bytes: binary, path: string>>`` (how Hugging Face ``datasets``
stores an Image), prompt as ``list<struct<content, role>>``, reward_model and
extra_info as structs, ratios as float32.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from queue import Full, Queue
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from trainer.data.resolvers import ImageResolveError, open_resolver, safe_relative_path
from trainer.data.schema import ImageResolver, drop_nulls

# A JSONL line longer than this is refused (a hostile file could be one endless line).
MAX_JSONL_LINE_BYTES = 64 * 1024 * 1024
PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
REQUIRED_COLUMNS = ("data_source", "images", "prompt", "ability", "reward_model")
T = TypeVar("T")
# Batches sized from the file (iter_parquet_batches(batch_rows=None)): about this much decoded
# data, within these row counts. Columnar checks cost per batch; memory grows with the batch.
BATCH_BYTES = 8 * 1024 * 1024
MIN_BATCH_ROWS = 64
MAX_BATCH_ROWS = 2048
# Struct columns whose null entries mean "absent" (see schema.drop_nulls).
_STRUCT_COLUMNS = ("reward_model", "extra_info")

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MESSAGE_TYPE = pa.struct([("content", pa.string()), ("role", pa.string())])
DET_REWARD_RATIO_TYPE = pa.struct(
    [
        (name, pa.float32())
        for name in ("iou_max_label_first", "iou_max_iou_first", "iou_completeness", "map", "map50", "map75")
    ]
)
REWARD_MODEL_TYPE = pa.struct(
    [
        ("answer", pa.string()),
        ("ground_truth", pa.string()),
        ("accuracy_ratio", pa.float32()),
        ("format_ratio", pa.float32()),
        ("verifier", pa.string()),
        (
            "verifier_parm",
            pa.struct([("det_verifier_normalized", pa.bool_()), ("det_reward_ratio", DET_REWARD_RATIO_TYPE)]),
        ),
    ]
)
EXTRA_INFO_TYPE = pa.struct([("id", pa.string()), ("image_path", pa.string())])
ORSTA_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),
        ("prompt", pa.list_(MESSAGE_TYPE)),
        ("ability", pa.string()),
        ("reward_model", REWARD_MODEL_TYPE),
        ("extra_info", EXTRA_INFO_TYPE),
    ]
)


class DataFormatError(ValueError):
    """A file that cannot be read as samples; ``uri`` and ``line`` (JSONL) or ``row`` (parquet) say where."""

    def __init__(self, uri: str, message: str, *, line: int | None = None, row: int | None = None) -> None:
        self.uri = uri
        self.line = line
        self.row = row
        self.reason = message
        where = uri
        if line is not None:
            where = f"{uri}, line {line}"
        elif row is not None:
            where = f"{uri}, row {row}"
        super().__init__(f"{where}: {message}")


def _reason(exc: BaseException) -> str:
    """An exception's text on one line (pyarrow's messages end with newlines)."""
    return " ".join(str(exc).split())


def file_format(uri: str) -> str:
    """``"parquet"`` or ``"jsonl"`` from the file name (``.jsonl.gz`` is gzip-compressed JSONL)."""
    name = uri.lower().split("?", 1)[0]
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise DataFormatError(
        uri, f"unknown file type; use one of {', '.join(PARQUET_SUFFIXES + JSONL_SUFFIXES)}"
    )


# ---------------------------------------------------------------------------------------------- parquet


def _is_string(t: pa.DataType) -> bool:
    """A string type, or one that casts safely to ``string`` (null, large or view strings, dictionaries)."""
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_null(t)
    )


def _is_binary(t: pa.DataType) -> bool:
    """A binary type, or one that casts safely to ``binary`` (null, large/view binaries)."""
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_null(t)
    )


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t)


def _struct_fields(t: pa.DataType) -> dict[str, pa.DataType]:
    return {t.field(i).name: t.field(i).type for i in range(t.num_fields)}


def _column_problem(name: str, t: pa.DataType) -> str | None:
    """Why column ``name`` of type ``t`` cannot hold the schema's field, or None when it can.

    A type that casts safely to the layout's (null, large or dictionary strings, large lists,
    ...) can: :func:`conformed_schema` gives the type it is read as.
    """
    if pa.types.is_null(t):
        return None  # every value null: the row validator reports each missing value
    if name in ("data_source", "ability"):
        return None if _is_string(t) else "expected string"
    if name == "prompt":
        if _is_list(t) and pa.types.is_null(t.value_type):
            return None  # every prompt empty: the row validator reports each
        if _is_list(t) and pa.types.is_struct(t.value_type):
            fields = _struct_fields(t.value_type)
            if _is_string(fields.get("role", pa.int8())) and _is_string(fields.get("content", pa.int8())):
                return None
        return "expected list<struct<content: string, role: string>>"
    if name == "images":
        if _is_list(t):
            value = t.value_type
            if _is_string(value):  # paths; a list<null> holds no image at all
                return None
            if pa.types.is_struct(value):
                fields = _struct_fields(value)
                data, path = fields.get("bytes"), fields.get("path")
                if (data is None or _is_binary(data)) and (path is None or _is_string(path)):
                    if data is not None or path is not None:
                        return None
        return "expected list<struct<bytes: binary, path: string>> or list<string>"
    if name in _STRUCT_COLUMNS:
        return None if pa.types.is_struct(t) else "expected struct"
    return None


def _leaf_target(t: pa.DataType, expected: pa.DataType) -> pa.DataType:
    """The type a value of type ``t`` inside a struct column is read as, for the layout's ``expected``.

    Only safe conversions: null to the expected type, strings to ``string``, binaries to
    ``binary``, integers to ``int64``; nested structs and lists field by field. Anything else
    is left as it is, for the row validator to judge.
    """
    if pa.types.is_null(t):
        return expected
    if pa.types.is_string(expected) and _is_string(t):
        return pa.string()
    if pa.types.is_binary(expected) and _is_binary(t):
        return pa.binary()
    if pa.types.is_struct(expected) and pa.types.is_struct(t):
        known = _struct_fields(expected)
        return pa.struct(
            [
                pa.field(f.name, _leaf_target(f.type, known[f.name]) if f.name in known else f.type)
                for f in (t.field(i) for i in range(t.num_fields))
            ]
        )
    if _is_list(t) and _is_list(expected):
        return pa.list_(_leaf_target(t.value_type, expected.value_type))
    if pa.types.is_integer(t) and not pa.types.is_uint64(t):
        return pa.int64()
    return t


def _column_target(name: str, t: pa.DataType) -> pa.DataType:
    """The type column ``name`` of type ``t`` (which :func:`_column_problem` accepted) is read as."""
    expected = ORSTA_SCHEMA.field(name).type if name in ORSTA_SCHEMA.names else None
    if expected is None or pa.types.is_null(t):
        return t
    if name == "images" and _is_string(t.value_type) and not pa.types.is_null(t.value_type):
        return pa.list_(pa.string())
    return _leaf_target(t, expected)


def conformed_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each column's type replaced by the layout's type it casts to safely."""
    return pa.schema([pa.field(f.name, _column_target(f.name, f.type)) for f in schema])


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast ``batch`` to ``schema`` (from :func:`conformed_schema`) with pyarrow's safe casts.

    Raises ``ValueError`` naming the column whose values do not convert (an integer out of range).
    """
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for field in schema:
        column = batch.column(field.name)
        if column.type.equals(field.type):
            arrays.append(column)
            continue
        try:
            arrays.append(column.cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ValueError(
                f"column {field.name} of type {column.type} does not convert to {field.type} ({_reason(exc)})"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def check_parquet_schema(schema: pa.Schema) -> list[str]:
    """Problems of a parquet schema for the sample layout (missing columns, wrong types)."""
    problems = []
    names = set(schema.names)
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    for field in schema:
        problem = _column_problem(field.name, field.type)
        if problem is not None:
            problems.append(f"column {field.name} has type {field.type}; {problem}")
    return problems


def _rows_per_batch(metadata: pq.FileMetaData) -> int:
    """Rows per batch so that a batch holds about BATCH_BYTES of decoded data."""
    if metadata.num_rows == 0:
        return MAX_BATCH_ROWS
    size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    per_row = max(1, size // metadata.num_rows)
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, BATCH_BYTES // per_row))


def iter_parquet_batches(
    uri: str,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int | None = 256,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a parquet sample file as record batches of at most ``batch_rows`` rows.

    ``batch_rows=None`` sizes batches from the file's metadata to about :data:`BATCH_BYTES`
    of decoded data (between :data:`MIN_BATCH_ROWS` and :data:`MAX_BATCH_ROWS` rows). The
    schema is checked first (:func:`check_parquet_schema`, or only ``columns`` when given); a
    file that cannot be read, or whose data is corrupt, raises :class:`DataFormatError`.
    Memory is bounded by one batch (and the row groups it is read from), whatever the file size.
    """
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    opened = fsspec.open(uri, "rb", **dict(storage_options or {}))
    try:
        handle = opened.open()
    except FileNotFoundError:
        raise DataFormatError(uri, "file not found") from None
    with contextlib.ExitStack() as stack:
        stack.enter_context(handle)
        # A local file is read by arrow itself: through a Python file object every read takes
        # the GIL, which makes arrow's decoding threads wait on each other.
        local = isinstance(opened.fs, LocalFileSystem)
        source = stack.enter_context(pa.OSFile(opened.path)) if local else handle
        try:
            parquet = pq.ParquetFile(source, buffer_size=1 << 20, pre_buffer=False)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataFormatError(uri, f"not a readable parquet file ({_reason(exc)})") from None
        schema = parquet.schema_arrow
        if columns is None:
            problems = check_parquet_schema(schema)
        else:
            unknown = [c for c in columns if c not in schema.names]
            problems = [f"no column(s) {', '.join(unknown)}"] if unknown else []
            problems += [
                f"column {f.name} has type {f.type}; {p}"
                for f in schema
                if f.name in columns and (p := _column_problem(f.name, f.type)) is not None
            ]
        if problems:
            raise DataFormatError(uri, "wrong schema: " + "; ".join(problems))
        read = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        target = conformed_schema(read)
        if batch_rows is None:
            batch_rows = _rows_per_batch(parquet.metadata)
        start = 0
        batches = parquet.iter_batches(
            batch_size=batch_rows, columns=list(columns) if columns else None, use_threads=local
        )
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise DataFormatError(
                    uri, f"corrupt data after row {start} of {parquet.metadata.num_rows} ({_reason(exc)})"
                ) from None
            try:
                batch = conform_batch(batch, target)
            except ValueError as exc:
                raise DataFormatError(uri, f"wrong schema: {exc}", row=start + 1) from None
            yield batch
            start += batch.num_rows


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` items ahead.

    Reading and decoding a parquet batch happens in pyarrow without the GIL, so the next batch
    is read on another core while the caller checks the current one. An exception of ``items``
    is raised here, in order; stopping early stops the thread (after the item it is reading).
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    break
            else:
                put((True, done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = queue.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def batch_to_rows(batch: pa.RecordBatch) -> list[dict]:
    """The rows of a record batch as the dicts :func:`iter_samples` yields (null struct entries dropped)."""
    rows = batch.to_pylist()
    for column in _STRUCT_COLUMNS:
        if column in batch.schema.names:
            for row in rows:
                value = row[column]
                if value is not None:
                    row[column] = drop_nulls(value)
    return rows


def _iter_parquet(
    uri: str, columns: Sequence[str] | None, batch_rows: int, storage_options: dict
) -> Iterator[dict]:
    for batch in iter_parquet_batches(
        uri, columns=columns, batch_rows=batch_rows, storage_options=storage_options
    ):
        yield from batch_to_rows(batch)


# ------------------------------------------------------------------------------------------------ jsonl


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _iter_jsonl(uri: str, storage_options: dict) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every non-blank line."""
    try:
        handle = fsspec.open(uri, "rb", compression="infer", **storage_options).open()
    except FileNotFoundError:
        raise DataFormatError(uri, "file not found") from None
    with handle:
        line_number = 0
        while True:
            try:
                raw = handle.readline(MAX_JSONL_LINE_BYTES + 1)
            except (OSError, EOFError) as exc:
                raise DataFormatError(uri, f"cannot read ({_reason(exc)})", line=line_number + 1) from None
            if not raw:
                return
            line_number += 1
            if len(raw) > MAX_JSONL_LINE_BYTES:
                raise DataFormatError(uri, f"line longer than {MAX_JSONL_LINE_BYTES} bytes", line=line_number)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataFormatError(uri, f"not valid UTF-8 (byte {exc.start})", line=line_number) from None
            try:
                row = json.loads(text, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    uri, f"not valid JSON ({exc.msg} at column {exc.colno})", line=line_number
                ) from None
            except (ValueError, RecursionError) as exc:
                raise DataFormatError(uri, f"not valid JSON ({_reason(exc)})", line=line_number) from None
            if not isinstance(row, dict):
                raise DataFormatError(
                    uri, f"each line must be a JSON object, got {type(row).__name__}", line=line_number
                )
            yield line_number, row


def _resolve_row_images(row: dict, resolver: ImageResolver) -> dict:
    """Replace path-only images (a JSONL path, or a parquet struct without bytes) by bytes and path."""
    images = row.get("images")
    if not isinstance(images, list):
        return row
    resolved = []
    for image in images:
        path = image if isinstance(image, str) else None
        if isinstance(image, dict) and image.get("bytes") is None and isinstance(image.get("path"), str):
            path = image["path"]
        if path is None:
            resolved.append(image)
            continue
        try:
            resolved.append({"bytes": resolver(path), "path": path})
        except (ImageResolveError, OSError, KeyError) as exc:
            raise _ImageMissing(f"images: {exc}") from None
    return {**row, "images": resolved}


class _ImageMissing(Exception):
    """Raised inside :func:`_resolve_row_images`; the caller knows the row and re-raises with it."""


# ------------------------------------------------------------------------------------------------ public


def iter_samples(
    uri: str,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int = 256,
    images_root: str | ImageResolver | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[dict]:
    """Stream the rows of one parquet, JSONL or JSONL.gz file as dicts.

    ``columns`` limits parquet reads to those columns (JSONL rows keep every
    key). ``images_root`` is a directory URI, an archive URI (zip/tar) or a
    callable: with it, images given by path only (JSONL path strings, parquet
    structs without bytes) are replaced by ``{"bytes", "path"}`` dicts; an
    image it cannot find raises. Null entries of the reward_model and
    extra_info structs are dropped (null means absent).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    options = dict(storage_options or {})
    resolver: ImageResolver | None
    if isinstance(images_root, str):
        resolver = open_resolver(images_root, storage_options=options)
    else:
        resolver = images_root
    if file_format(uri) == "parquet":
        for number, row in enumerate(_iter_parquet(uri, columns, batch_rows, options), start=1):
            if resolver is not None:
                try:
                    row = _resolve_row_images(row, resolver)
                except _ImageMissing as exc:
                    raise DataFormatError(uri, str(exc), row=number) from None
            yield row
        return
    for line, row in _iter_jsonl(uri, options):
        if resolver is not None:
            try:
                row = _resolve_row_images(row, resolver)
            except _ImageMissing as exc:
                raise DataFormatError(uri, str(exc), line=line) from None
        yield row


def iter_dataset(uris: Iterable[str], **kwargs: Any) -> Iterator[dict]:
    """Stream the rows of several files one after another (keyword arguments as :func:`iter_samples`)."""
    for uri in uris:
        yield from iter_samples(uri, **kwargs)


def _check_keys(value: Mapping[str, Any], struct: pa.DataType | pa.Schema, where: str) -> None:
    """Refuse keys the Orsta layout has no column for, rather than silently dropping them."""
    fields = {f.name: f.type for f in struct} if isinstance(struct, pa.Schema) else _struct_fields(struct)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(
            f"{where}: no column for key(s) {', '.join(map(str, unknown))}; known: {', '.join(fields)}"
        )
    for key, item in value.items():
        if isinstance(item, Mapping) and pa.types.is_struct(fields[key]):
            _check_keys(item, fields[key], f"{where}.{key}" if where else key)


def write_parquet(rows: Iterable[Mapping[str, Any]], uri: str, *, row_group_rows: int = 256) -> int:
    """Write rows in the Orsta-Data-47k layout; return the number written.

    Rows are written ``row_group_rows`` at a time, so an iterator of any length
    is written in bounded memory. Keys absent from a row are written as null;
    keys the layout has no column for raise ``ValueError``.
    """
    count = 0
    with (
        fsspec.open(uri, "wb") as handle,
        pq.ParquetWriter(handle, ORSTA_SCHEMA, compression="snappy") as writer,
    ):
        chunk: list[Mapping[str, Any]] = []
        for row in rows:
            _check_keys(row, ORSTA_SCHEMA, "")
            chunk.append(row)
            if len(chunk) == row_group_rows:
                writer.write_table(pa.Table.from_pylist(chunk, schema=ORSTA_SCHEMA))
                count += len(chunk)
                chunk = []
        if chunk or count == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=ORSTA_SCHEMA))
            count += len(chunk)
    return count


def write_jsonl(rows: Iterable[Mapping[str, Any]], uri: str, *, images_dir: str | None = None) -> int:
    """Write rows as JSONL (gzip when ``uri`` ends with ``.gz``); return the number written.

    Images given as ``{"bytes", "path"}`` are written to ``images_dir`` at their
    ``path`` and appear in the JSONL as that path; images given as paths are
    kept as they are.
    """
    count = 0
    with fsspec.open(uri, "wt", encoding="utf-8", compression="infer", newline="\n") as handle:
        for row in rows:
            row = dict(row)
            images = row.get("images")
            if isinstance(images, list):
                row["images"] = [_store_image(image, images_dir) for image in images]
            handle.write(json.dumps(row, ensure_ascii=False, allow_nan=False, sort_keys=False) + "\n")
            count += 1
    return count


def _store_image(image: Any, images_dir: str | None) -> Any:
    if not isinstance(image, Mapping):
        return image
    path = image.get("path")
    data = image.get("bytes")
    if not isinstance(path, str) or not path:
        raise ValueError("an image written to JSONL needs a path")
    if data is None:
        return path
    if images_dir is None:
        raise ValueError(f"image {path!r} has bytes: give images_dir to write it beside the JSONL")
    relative = safe_relative_path(path)
    fs, root = fsspec.core.url_to_fs(images_dir)
    target = posixpath.join(root.rstrip("/"), relative)
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    with fs.open(target, "wb") as out:
        out.write(data)
    return relative
