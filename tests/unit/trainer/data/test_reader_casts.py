"""Parquet columns whose type converts safely to the layout's are read as the layout's type."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.data.reader import (
    IMAGE_TYPE,
    MESSAGE_TYPE,
    check_parquet_schema,
    conform_batch,
    conformed_schema,
    iter_parquet_batches,
    iter_samples,
)

from .factories import make_row, png_bytes


def _write(tmp_path, table: pa.Table) -> str:
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    return str(path)


def test_a_null_typed_image_path_is_read_as_string(tmp_path):
    rows = [make_row(images=[{"bytes": png_bytes(), "path": None}]) for _ in range(3)]
    table = pa.Table.from_pylist(rows)
    assert table.schema.field("images").type == pa.list_(
        pa.struct([("bytes", pa.binary()), ("path", pa.null())])
    )
    uri = _write(tmp_path, table)
    assert check_parquet_schema(table.schema) == []
    (batch,) = list(iter_parquet_batches(uri))
    assert batch.schema.field("images").type == pa.list_(IMAGE_TYPE)
    assert [row["images"][0]["path"] for row in iter_samples(uri)] == [None, None, None]


@pytest.mark.parametrize(
    ("column", "file_type", "read_as"),
    [
        ("data_source", pa.large_string(), pa.string()),
        ("ability", pa.dictionary(pa.int32(), pa.string()), pa.string()),
        ("ability", pa.string_view(), pa.string()),
        ("images", pa.list_(pa.null()), pa.list_(IMAGE_TYPE)),
        ("images", pa.large_list(pa.large_string()), pa.list_(pa.string())),
        (
            "images",
            pa.list_(pa.struct([("bytes", pa.large_binary())])),
            pa.list_(pa.struct([("bytes", pa.binary())])),
        ),
        (
            "prompt",
            pa.large_list(pa.struct([("role", pa.null()), ("content", pa.large_string())])),
            pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
        ),
        ("prompt", pa.list_(pa.null()), pa.list_(MESSAGE_TYPE)),
        (
            "reward_model",
            pa.struct([("format_ratio", pa.int32()), ("answer", pa.null())]),
            pa.struct([("format_ratio", pa.int64()), ("answer", pa.string())]),
        ),
        # What the layout has no safe cast for stays as it is, for the row validator to judge.
        ("reward_model", pa.struct([("answer", pa.float64())]), pa.struct([("answer", pa.float64())])),
        ("unknown", pa.int32(), pa.int32()),
    ],
)
def test_conformed_types(column, file_type, read_as):
    schema = pa.schema([(column, file_type)])
    assert [p for p in check_parquet_schema(schema) if "missing" not in p] == []
    assert conformed_schema(schema).field(column).type == read_as


def test_int32_ratios_are_read_as_int64_and_validate(tmp_path):
    rows = [make_row() for _ in range(2)]
    for row in rows:
        row["reward_model"] = {**row["reward_model"], "format_ratio": 1}
    table = pa.Table.from_pylist(rows)
    reward = table.column("reward_model").combine_chunks()
    names = [reward.type.field(i).name for i in range(reward.type.num_fields)]
    children = [reward.field(i) for i in range(reward.type.num_fields)]
    children[names.index("format_ratio")] = children[names.index("format_ratio")].cast(pa.int32())
    table = table.set_column(
        table.schema.get_field_index("reward_model"),
        "reward_model",
        pa.StructArray.from_arrays(children, names=names),
    )
    uri = _write(tmp_path, table)
    assert [row["reward_model"]["format_ratio"] for row in iter_samples(uri)] == [1, 1]


def test_a_value_that_does_not_convert_names_the_column():
    batch = pa.record_batch({"x": pa.array([2**40], pa.int64())})
    with pytest.raises(ValueError, match=r"column x of type int64 does not convert to int32"):
        conform_batch(batch, pa.schema([("x", pa.int32())]))


def test_types_that_do_not_convert_are_still_refused():
    schema = pa.schema([("data_source", pa.int64()), ("images", pa.list_(pa.int32()))])
    assert check_parquet_schema(schema)[1:] == [
        "column data_source has type int64; expected string",
        "column images has type list<item: int32>;"
        " expected list<struct<bytes: binary, path: string>> or list<string>",
    ]
