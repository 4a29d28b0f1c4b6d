"""Streaming readers and writers: round trips, streaming, and every kind of broken file."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.data import reader
from trainer.data.reader import (
    ORSTA_SCHEMA,
    DataFormatError,
    batch_to_rows,
    check_parquet_schema,
    file_format,
    iter_dataset,
    iter_parquet_batches,
    iter_samples,
    write_jsonl,
    write_parquet,
)
from trainer.data.resolvers import ArchiveResolver, DirectoryResolver, ImageResolveError, safe_relative_path

from .factories import make_row, png_bytes


def _rows(count: int) -> list[dict]:
    # 0.25 is exact in float32, so the ratios read back equal.
    rows = []
    for i in range(count):
        row = make_row(extra_info={"id": f"row-{i}", "image_path": f"images/{i}.png"})
        row["reward_model"] = {**row["reward_model"], "format_ratio": 0.25}
        rows.append(row)
    return rows


def _fs():
    return fsspec.filesystem("memory")


# ------------------------------------------------------------------------------------------ parquet


def test_parquet_round_trip(memory_root):
    rows = _rows(3)
    assert write_parquet(rows, f"{memory_root}/a.parquet") == 3
    assert list(iter_samples(f"{memory_root}/a.parquet")) == rows


def test_parquet_has_the_orsta_layout(memory_root):
    write_parquet(_rows(1), f"{memory_root}/a.parquet")
    schema = pq.read_schema(io.BytesIO(_fs().cat(f"{memory_root}/a.parquet")))
    assert schema.equals(ORSTA_SCHEMA)
    assert str(schema.field("images").type) == "list<element: struct<bytes: binary, path: string>>"


def test_parquet_nulls_read_back_as_absent(memory_root):
    # A math row has no verifier_parm: parquet stores a null struct, the reader drops it again.
    row = make_row(extra_info={"id": "x", "image_path": None})
    write_parquet([row], f"{memory_root}/a.parquet")
    (back,) = iter_samples(f"{memory_root}/a.parquet")
    assert "verifier_parm" not in back["reward_model"]
    assert back["extra_info"] == {"id": "x"}
    # float32 storage, as in Orsta-Data-47k: 0.1 reads back as 0.10000000149011612
    assert back["reward_model"]["format_ratio"] == pytest.approx(0.1, abs=1e-7)


def test_parquet_streams_by_batches(memory_root):
    rows = _rows(300)
    write_parquet(rows, f"{memory_root}/a.parquet", row_group_rows=100)
    read = list(iter_samples(f"{memory_root}/a.parquet", batch_rows=64))
    assert len(read) == 300
    assert [r["extra_info"]["id"] for r in read] == [f"row-{i}" for i in range(300)]


def test_parquet_generator_yields_before_the_end(memory_root):
    write_parquet(_rows(300), f"{memory_root}/a.parquet", row_group_rows=100)
    stream = iter_samples(f"{memory_root}/a.parquet", batch_rows=8)
    assert next(stream)["extra_info"]["id"] == "row-0"
    stream.close()


def test_parquet_columns(memory_root):
    write_parquet(_rows(2), f"{memory_root}/a.parquet")
    assert (
        list(iter_samples(f"{memory_root}/a.parquet", columns=["data_source", "ability"]))
        == [{"data_source": "mm_math", "ability": "math"}] * 2
    )


def test_parquet_unknown_column(memory_root):
    write_parquet(_rows(1), f"{memory_root}/a.parquet")
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(f"{memory_root}/a.parquet", columns=["data_source", "nope"]))
    assert str(info.value) == f"{memory_root}/a.parquet: wrong schema: no column(s) nope"


def test_empty_parquet(memory_root):
    assert write_parquet([], f"{memory_root}/a.parquet") == 0
    assert list(iter_samples(f"{memory_root}/a.parquet")) == []


def test_truncated_parquet(memory_root):
    write_parquet(_rows(5), f"{memory_root}/a.parquet")
    data = _fs().cat(f"{memory_root}/a.parquet")
    _fs().pipe(f"{memory_root}/cut.parquet", data[: len(data) // 2])
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(f"{memory_root}/cut.parquet"))
    assert str(info.value) == (
        f"{memory_root}/cut.parquet: not a readable parquet file (Parquet magic bytes not found in footer."
        " Either the file is corrupted or this is not a parquet file.)"
    )


def test_corrupt_row_group_names_the_rows(memory_root):
    write_parquet(_rows(300), f"{memory_root}/a.parquet", row_group_rows=100)
    data = bytearray(_fs().cat(f"{memory_root}/a.parquet"))
    column = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 16] = b"\xff" * 16  # the page header of row group 1 (rows 100-199)
    _fs().pipe(f"{memory_root}/bad.parquet", bytes(data))
    read = []
    with pytest.raises(DataFormatError) as info:
        for row in iter_samples(f"{memory_root}/bad.parquet", batch_rows=50):
            read.append(row)
    # batches of 50: rows 0-99 come from the intact row group 0, then row group 1 fails
    assert len(read) == 100
    assert str(info.value).startswith(f"{memory_root}/bad.parquet: corrupt data after row 100 of 300 (")


@pytest.mark.parametrize("where", ["memory", "local"])
def test_batches_of_a_file_read_as_rows(memory_root, tmp_path, where):
    uri = f"{memory_root}/a.parquet" if where == "memory" else str(tmp_path / "a.parquet")
    rows = _rows(7)
    write_parquet(rows, uri, row_group_rows=3)
    batches = list(iter_parquet_batches(uri, batch_rows=2))
    assert [b.num_rows for b in batches] == [2, 2, 2, 1]  # batches run across row groups
    assert [row for b in batches for row in batch_to_rows(b)] == rows
    sized = list(iter_parquet_batches(uri, batch_rows=None))  # sized from the metadata: one batch here
    assert [b.num_rows for b in sized] == [7]


def test_local_files_fail_like_any_other(tmp_path):
    with pytest.raises(DataFormatError) as info:
        list(iter_parquet_batches(str(tmp_path / "missing.parquet")))
    assert str(info.value) == f"{tmp_path / 'missing.parquet'}: file not found"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match=r"bad\.parquet: not a readable parquet file \("):
        list(iter_parquet_batches(str(tmp_path / "bad.parquet")))
    write_parquet(_rows(300), str(tmp_path / "a.parquet"), row_group_rows=100)
    data = bytearray((tmp_path / "a.parquet").read_bytes())
    column = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 16] = b"\xff" * 16
    (tmp_path / "a.parquet").write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="corrupt data after row 100 of 300"):
        list(iter_parquet_batches(str(tmp_path / "a.parquet"), batch_rows=50))


def test_not_a_parquet_file(memory_root):
    _fs().pipe(f"{memory_root}/a.parquet", b'{"data_source": "x"}\n')
    with pytest.raises(DataFormatError, match=r"a\.parquet: not a readable parquet file \("):
        list(iter_samples(f"{memory_root}/a.parquet"))


def test_parquet_with_the_wrong_schema(memory_root):
    table = pa.table({"data_source": [1, 2], "prompt": ["hi", "there"], "images": [[b"x"], [b"y"]]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    _fs().pipe(f"{memory_root}/a.parquet", buffer.getvalue())
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(f"{memory_root}/a.parquet"))
    assert str(info.value) == (
        f"{memory_root}/a.parquet: wrong schema: missing column(s) ability, reward_model;"
        " column data_source has type int64; expected string;"
        " column prompt has type string; expected list<struct<content: string, role: string>>;"
        " column images has type list<element: binary>; expected list<struct<bytes: binary, path: string>>"
        " or list<string>"
    )


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (ORSTA_SCHEMA, []),
        # all-null optional columns and path-only images are accepted
        (
            pa.schema(
                [
                    ("data_source", pa.large_string()),
                    ("images", pa.list_(pa.string())),
                    ("prompt", pa.large_list(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                    ("ability", pa.null()),
                    ("reward_model", pa.struct([("ground_truth", pa.string())])),
                    ("extra_info", pa.null()),
                ]
            ),
            [],
        ),
        (
            pa.schema(
                [
                    ("data_source", pa.string()),
                    ("images", pa.list_(pa.struct([("width", pa.int32())]))),
                    ("prompt", pa.list_(pa.struct([("role", pa.string())]))),
                    ("ability", pa.string()),
                    ("reward_model", pa.string()),
                ]
            ),
            [
                "column images has type list<item: struct<width: int32>>;"
                " expected list<struct<bytes: binary, path: string>> or list<string>",
                "column prompt has type list<item: struct<role: string>>;"
                " expected list<struct<content: string, role: string>>",
                "column reward_model has type string; expected struct",
            ],
        ),
    ],
)
def test_check_parquet_schema(schema, expected):
    assert check_parquet_schema(schema) == expected


def test_write_parquet_refuses_unknown_keys(memory_root):
    row = make_row()
    row["reward_model"] = {**row["reward_model"], "style": "rule"}
    with pytest.raises(ValueError) as info:
        write_parquet([row], f"{memory_root}/a.parquet")
    assert str(info.value) == (
        "reward_model: no column for key(s) style; known: answer, ground_truth, accuracy_ratio, format_ratio,"
        " verifier, verifier_parm"
    )


# -------------------------------------------------------------------------------------------- jsonl


def _write_text(uri: str, text: str) -> None:
    _fs().pipe(uri, text.encode())


def test_jsonl_round_trip_with_images_directory(memory_root):
    rows = _rows(3)
    assert write_jsonl(rows, f"{memory_root}/a.jsonl", images_dir=memory_root) == 3
    plain = list(iter_samples(f"{memory_root}/a.jsonl"))
    assert plain[0]["images"] == ["images/a.png"]
    resolved = list(iter_samples(f"{memory_root}/a.jsonl", images_root=memory_root))
    assert resolved == rows


def test_jsonl_gz_round_trip(memory_root):
    rows = _rows(2)
    write_jsonl(rows, f"{memory_root}/a.jsonl.gz", images_dir=f"{memory_root}/img")
    assert gzip.decompress(_fs().cat(f"{memory_root}/a.jsonl.gz")).count(b"\n") == 2
    assert list(iter_samples(f"{memory_root}/a.jsonl.gz", images_root=f"{memory_root}/img")) == rows


def test_write_jsonl_needs_images_dir_for_bytes(memory_root):
    with pytest.raises(ValueError, match=r"^image 'images/a\.png' has bytes: give images_dir"):
        write_jsonl(_rows(1), f"{memory_root}/a.jsonl")


def test_write_jsonl_refuses_escaping_image_paths(memory_root):
    row = make_row(images=[{"bytes": png_bytes(), "path": "../outside.png"}])
    with pytest.raises(ImageResolveError, match="must stay inside"):
        write_jsonl([row], f"{memory_root}/a.jsonl", images_dir=memory_root)


def test_jsonl_blank_lines_are_skipped(memory_root):
    _write_text(f"{memory_root}/a.jsonl", '{"a": 1}\n\n   \n{"a": 2}\n')
    assert list(iter_samples(f"{memory_root}/a.jsonl")) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            '{"a": 1}\n{"a": 2,, }\n',
            2,
            "not valid JSON (Expecting property name enclosed in double quotes at column 9)",
        ),
        ('{"a": 1}\n\n{"a": \n', 3, "not valid JSON (Expecting value at column 7)"),
        ("[1, 2]\n", 1, "each line must be a JSON object, got list"),
        ('"just a string"\n', 1, "each line must be a JSON object, got str"),
        ('{"a": NaN}\n', 1, "not valid JSON (NaN is not a JSON number)"),
        ('{"a": 1}\n{"a": 1} trailing\n', 2, "not valid JSON (Extra data at column 10)"),
    ],
)
def test_broken_jsonl_names_file_and_line(memory_root, text, line, reason):
    uri = f"{memory_root}/broken.jsonl"
    _write_text(uri, text)
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(uri))
    assert info.value.line == line
    assert str(info.value) == f"{uri}, line {line}: {reason}"


def test_jsonl_invalid_utf8(memory_root):
    uri = f"{memory_root}/a.jsonl"
    _fs().pipe(uri, b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(uri))
    assert str(info.value) == f"{uri}, line 2: not valid UTF-8 (byte 7)"


def test_jsonl_deeply_nested_line(memory_root):
    uri = f"{memory_root}/a.jsonl"
    _write_text(uri, "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataFormatError, match=r", line 1: not valid JSON \("):
        list(iter_samples(uri))


def test_jsonl_line_too_long(memory_root, monkeypatch):
    monkeypatch.setattr(reader, "MAX_JSONL_LINE_BYTES", 16)
    uri = f"{memory_root}/a.jsonl"
    _write_text(uri, '{"a": 1}\n{"data_source": "' + "x" * 100 + '"}\n')
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(uri))
    assert str(info.value) == f"{uri}, line 2: line longer than 16 bytes"


def test_missing_file(memory_root):
    for name in ("a.jsonl", "a.parquet"):
        with pytest.raises(DataFormatError) as info:
            list(iter_samples(f"{memory_root}/{name}"))
        assert str(info.value) == f"{memory_root}/{name}: file not found"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("a.parquet", "parquet"),
        ("s3://bucket/A.PARQUET", "parquet"),
        ("file:///d/a.jsonl", "jsonl"),
        ("memory://x/a.jsonl.gz", "jsonl"),
    ],
)
def test_file_format(uri, expected):
    assert file_format(uri) == expected


def test_unknown_file_type():
    with pytest.raises(DataFormatError) as info:
        list(iter_samples("data.csv"))
    assert str(info.value) == "data.csv: unknown file type; use one of .parquet, .jsonl, .jsonl.gz"


def test_batch_rows_must_be_positive():
    with pytest.raises(ValueError, match="^batch_rows must be at least 1, got 0$"):
        list(iter_samples("a.parquet", batch_rows=0))


def test_iter_dataset_chains_files(memory_root, tmp_path):
    write_parquet(_rows(2), f"{memory_root}/a.parquet")
    local = tmp_path / "b.jsonl"
    local.write_text('{"data_source": "b"}\n')
    read = list(iter_dataset([f"{memory_root}/a.parquet", str(local), f"file://{local}"]))
    assert [r["data_source"] for r in read] == ["mm_math", "mm_math", "b", "b"]


# ---------------------------------------------------------------------------------------- resolvers


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("images/link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize(("suffix", "mode"), [(".zip", None), (".tar", "w"), (".tar.gz", "w:gz")])
def test_jsonl_images_from_an_archive(memory_root, suffix, mode):
    image = png_bytes()
    members = {"images/a.png": image, "../evil.png": image}
    data = _zip_bytes(members) if mode is None else _tar_bytes(members, mode)
    _fs().pipe(f"{memory_root}/images{suffix}", data)
    _write_text(f"{memory_root}/a.jsonl", json.dumps(make_row(images=["./images/a.png"])) + "\n")
    (row,) = iter_samples(f"{memory_root}/a.jsonl", images_root=f"{memory_root}/images{suffix}")
    assert row["images"] == [{"bytes": image, "path": "./images/a.png"}]
    resolver = ArchiveResolver(f"{memory_root}/images{suffix}")
    # a member whose name escapes the archive is never served; nor is a link
    with pytest.raises(ImageResolveError, match="must stay inside"):
        resolver("../evil.png")
    if mode is not None:
        with pytest.raises(ImageResolveError, match="not found in archive"):
            resolver("images/link.png")
    resolver.close()


def test_missing_image_names_file_line_and_path(memory_root):
    _fs().pipe(f"{memory_root}/images.zip", _zip_bytes({"images/a.png": png_bytes()}))
    _write_text(f"{memory_root}/a.jsonl", json.dumps(make_row(images=["images/b.png"])) + "\n")
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(f"{memory_root}/a.jsonl", images_root=f"{memory_root}/images.zip"))
    assert str(info.value) == (
        f"{memory_root}/a.jsonl, line 1: images: image 'images/b.png' not found in archive"
        f" {memory_root}/images.zip"
    )


def test_missing_image_line_counts_blank_lines(memory_root):
    _fs().pipe(f"{memory_root}/img/a.png", png_bytes())
    text = json.dumps(make_row(images=["a.png"])) + "\n\n" + json.dumps(make_row(images=["b.png"])) + "\n"
    _write_text(f"{memory_root}/a.jsonl", text)
    with pytest.raises(DataFormatError) as info:
        list(iter_samples(f"{memory_root}/a.jsonl", images_root=f"{memory_root}/img"))
    assert info.value.line == 3
    assert str(info.value).startswith(
        f"{memory_root}/a.jsonl, line 3: images: image 'b.png' not found under "
    )


def test_parquet_path_only_images_are_resolved(memory_root):
    _fs().pipe(f"{memory_root}/img/a.png", png_bytes())
    rows = [
        make_row(images=[{"bytes": None, "path": "a.png"}]),
        make_row(images=[{"bytes": None, "path": "b.png"}]),
    ]
    write_parquet(rows, f"{memory_root}/a.parquet")
    stream = iter_samples(f"{memory_root}/a.parquet", images_root=f"{memory_root}/img")
    assert next(stream)["images"] == [{"bytes": png_bytes(), "path": "a.png"}]
    with pytest.raises(DataFormatError) as info:
        next(stream)
    assert info.value.row == 2
    assert str(info.value).startswith(
        f"{memory_root}/a.parquet, row 2: images: image 'b.png' not found under "
    )
    # without images_root the paths are left for the validator
    assert next(iter_samples(f"{memory_root}/a.parquet"))["images"] == [{"bytes": None, "path": "a.png"}]


def test_corrupt_archive(memory_root):
    _fs().pipe(f"{memory_root}/images.zip", b"PK\x03\x04 not really a zip")
    resolver = ArchiveResolver(f"{memory_root}/images.zip")
    with pytest.raises(ImageResolveError, match=r"is not a readable zip/tar file"):
        resolver("a.png")


def test_directory_resolver(memory_root):
    _fs().pipe(f"{memory_root}/img/a.png", b"abc")
    resolve = DirectoryResolver(f"{memory_root}/img")
    assert resolve("a.png") == b"abc"
    with pytest.raises(ImageResolveError, match="^image 'b.png' not found under "):
        resolve("b.png")


def test_oversized_archive_member_is_refused(memory_root, monkeypatch):
    from trainer.data import resolvers

    monkeypatch.setattr(resolvers, "MAX_IMAGE_BYTES", 10)
    _fs().pipe(f"{memory_root}/images.zip", _zip_bytes({"a.png": b"x" * 11}))
    with pytest.raises(ImageResolveError) as info:
        ArchiveResolver(f"{memory_root}/images.zip")("a.png")
    assert str(info.value) == "image 'a.png' is 11 bytes; the limit is 10"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "image path must be a non-empty string"),
        ("/etc/passwd", "image path '/etc/passwd' must be relative"),
        ("C:/x.png", "image path 'C:/x.png' must be relative"),
        ("a/../../x.png", "image path 'a/../../x.png' must stay inside the archive (no '..')"),
        ("a\\..\\x.png", "image path 'a\\\\..\\\\x.png' must not contain NUL or backslashes"),
        ("a\x00.png", "image path 'a\\x00.png' must not contain NUL or backslashes"),
        ("./.", "image path './.' names no file"),
    ],
)
def test_safe_relative_path_refuses(path, message):
    with pytest.raises(ImageResolveError) as info:
        safe_relative_path(path)
    assert str(info.value) == message


def test_safe_relative_path_normalises():
    assert safe_relative_path("./images//a.png") == "images/a.png"


def test_prefetch_keeps_order_and_raises_in_place():
    from trainer.data.reader import prefetch

    assert list(prefetch(iter(range(100)))) == list(range(100))
    assert list(prefetch(iter([]))) == []

    def failing():
        yield 1
        yield 2
        raise DataFormatError("a.parquet", "corrupt data after row 2 of 9 (boom)")

    seen = []
    with pytest.raises(DataFormatError, match="corrupt data after row 2"):
        for item in prefetch(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetch_stopped_early_closes_its_source():
    import threading

    from trainer.data.reader import prefetch

    closed = threading.Event()
    produced = []

    def endless():
        try:
            n = 0
            while True:
                produced.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    items = prefetch(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set()
    assert len(produced) <= 3 + 2 + 1  # read ahead by at most depth, plus the one being put
