"""Reading samples of a data source back from its parquet files, a page at a time."""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow.parquet as pq

from control.errors import NotFound
from control.models import DataSource
from trainer.data.schema import drop_nulls

SPLITS = ("train", "test")


def _uris(source: DataSource, split: str) -> list[str]:
    if split not in SPLITS:
        raise NotFound(f"split must be one of {', '.join(SPLITS)}, got {split[:20]!r}")
    return list(source.files.get(split, []))


def split_count(source: DataSource, split: str) -> int:
    return source.train_count if split == "train" else source.test_count


def _rows(source: DataSource, split: str, offset: int, limit: int) -> Iterator[tuple[int, dict]]:
    """Rows ``offset`` … ``offset + limit - 1`` of a split, reading only the row groups that hold them.

    The files are local or on S3 storage; only the footer and the row groups read are fetched.
    """
    index = 0
    end = offset + limit
    for uri in _uris(source, split):
        with fsspec.open(uri, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                n = parquet.metadata.row_group(group).num_rows
                if index + n <= offset:
                    index += n
                    continue
                if index >= end:
                    return
                for row in parquet.read_row_group(group).to_pylist():
                    if offset <= index < end:
                        for key in ("reward_model", "extra_info"):
                            if row.get(key) is not None:
                                row[key] = drop_nulls(row[key])
                        yield index, row
                    index += 1
                    if index >= end:
                        return


def samples_page(*, source: DataSource, split: str, offset: int, limit: int) -> list[tuple[int, dict]]:
    return list(_rows(source, split, offset, limit))


def sample_get(*, source: DataSource, split: str, index: int) -> dict:
    rows = list(_rows(source, split, index, 1))
    if not rows:
        raise NotFound(f"{source.name} has {split_count(source, split)} {split} samples; no sample {index}")
    return rows[0][1]
