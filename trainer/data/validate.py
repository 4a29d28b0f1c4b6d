"""Validate a whole sample file in one streaming pass: row errors plus a summary per data source.

This is what an upload needs (DESIGN.md §2): every problem as (row, field,
message), and one entry per distinct ``data_source`` with its task type,
verifier and sample count. Rows are numbered from 1 in file order (for JSONL,
blank lines are not counted). A file that cannot be read at all raises
:class:`trainer.data.reader.DataFormatError` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.data.columnar import batch_errors
from trainer.data.images import DEFAULT_MAX_IMAGE_PIXELS
from trainer.data.reader import file_format, iter_parquet_batches, iter_samples, prefetch
from trainer.data.resolvers import open_resolver
from trainer.data.schema import ImageResolver, SampleError, task_type, validate_sample


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem of one row; ``row`` counts from 1."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"


@dataclass(slots=True)
class SourceSummary:
    """What a data source holds: its task type and verifier (from its first valid row) and its size."""

    data_source: str
    task_type: str
    verifier: str
    count: int = 0


@dataclass(slots=True)
class FileReport:
    """The outcome of :func:`validate_file`."""

    rows: int = 0
    invalid_rows: int = 0
    error_count: int = 0  # every error found, including those past max_errors
    errors: list[RowError] = field(default_factory=list)  # the first max_errors of them
    sources: dict[str, SourceSummary] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no row has an error."""
        return self.error_count == 0


def validate_file(
    uri: str,
    *,
    images_root: str | ImageResolver | None = None,
    check_images: bool = True,
    decode_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_errors: int = 100,
    storage_options: Mapping[str, Any] | None = None,
) -> FileReport:
    """Check every row of ``uri`` against the sample schema, streaming.

    ``images_root`` (directory or archive URI, or a resolver) is where the
    image paths of JSONL rows are read from; a missing image is an error of
    its row, not of the file. Only the first ``max_errors`` errors are kept;
    ``error_count`` counts them all. A source whose rows name different
    verifiers is an error too: one source is scored one way.

    Parquet files are checked a record batch at a time
    (:func:`trainer.data.columnar.batch_errors`, the same verdicts as
    :func:`validate_sample` row by row, at a fraction of the cost); JSONL rows
    one by one.
    """
    if max_errors < 0:
        raise ValueError(f"max_errors must be >= 0, got {max_errors}")
    resolver: ImageResolver | None
    if isinstance(images_root, str):
        resolver = open_resolver(images_root, storage_options=dict(storage_options or {}))
    else:
        resolver = images_root
    options = {
        "check_images": check_images,
        "decode_images": decode_images,
        "max_image_pixels": max_image_pixels,
        "resolve_image": resolver,
    }
    tally = _Tally(max_errors)
    if file_format(uri) == "parquet":
        batches = iter_parquet_batches(uri, batch_rows=None, storage_options=storage_options)
        for batch in prefetch(batches):
            tally.batch(batch, batch_errors(batch, **options))
    else:
        for sample in iter_samples(uri, storage_options=storage_options):
            errors = validate_sample(sample, **options)
            if errors:
                tally.invalid(errors)
            else:
                verifier = sample["reward_model"].get("verifier", "")
                tally.valid(sample["data_source"], verifier, sample["ability"])
    return tally.report


class _Tally:
    """A :class:`FileReport` built in row order: one row at a time, or a record batch at a time."""

    def __init__(self, max_errors: int) -> None:
        self.report = FileReport()
        self.max_errors = max_errors
        self.tasks: dict[tuple[str, str, Any], str] = {}

    def _error(self, row: int, field_name: str, message: str) -> None:
        self.report.error_count += 1
        if len(self.report.errors) < self.max_errors:
            self.report.errors.append(RowError(row, field_name, message))

    def _clash(self, row: int, name: str, verifier: str) -> None:
        self._error(
            row,
            "reward_model.verifier",
            f"source {name!r} uses verifier {self.report.sources[name].verifier!r} in earlier rows,"
            f" {verifier!r} here; give each verifier its own data_source",
        )
        self.report.invalid_rows += 1

    def _summary(self, name: str, verifier: str, ability: Any) -> SourceSummary:
        """The source's summary, created from this (its first valid) row when new."""
        summary = self.report.sources.get(name)
        if summary is None:
            key = (name, verifier, ability)
            task = self.tasks.get(key)
            if task is None:
                row = {"data_source": name, "ability": ability, "reward_model": {"verifier": verifier}}
                task = self.tasks[key] = task_type(row)
            summary = self.report.sources[name] = SourceSummary(name, task, verifier)
        return summary

    def invalid(self, errors: list[SampleError]) -> None:
        """The next row, with its errors."""
        self.report.rows += 1
        for error in errors:
            self._error(self.report.rows, error.field, error.message)
        self.report.invalid_rows += 1

    def valid(self, name: str, verifier: str, ability: Any) -> None:
        """The next row, valid on its own; an error still when its source used another verifier."""
        self.report.rows += 1
        summary = self._summary(name, verifier, ability)
        if summary.verifier != verifier:
            self._clash(self.report.rows, name, verifier)
        else:
            summary.count += 1

    def batch(self, batch: pa.RecordBatch, errors: dict[int, list[SampleError]]) -> None:
        """The rows of ``batch``, ``errors`` by row: as :meth:`invalid`/:meth:`valid` row by row,
        with the valid rows grouped by (data_source, verifier) instead of visited one by one."""
        first, n = self.report.rows + 1, batch.num_rows
        valid = np.ones(n, dtype=bool)
        valid[list(errors)] = False
        clashes: dict[int, tuple[str, str]] = {}  # row in batch -> (source, verifier)
        if valid.any():
            # A valid row has string data_source and ability and a reward_model with a verifier.
            sources = pc.dictionary_encode(batch.column("data_source"))
            verifiers = pc.dictionary_encode(batch.column("reward_model").field("verifier"))
            names, kinds = sources.dictionary.to_pylist(), verifiers.dictionary.to_pylist()
            codes = sources.indices.fill_null(0).to_numpy() * (len(kinds) + 1)
            codes = codes + verifiers.indices.fill_null(0).to_numpy()
            rows = np.flatnonzero(valid)
            pairs, first_row, pair_of = np.unique(codes[rows], return_index=True, return_inverse=True)
            counts = np.bincount(pair_of.reshape(-1), minlength=len(pairs))
            for p in np.argsort(first_row).tolist():  # pairs in the order they first appear
                row = int(rows[first_row[p]])
                name, verifier = names[pairs[p] // (len(kinds) + 1)], kinds[pairs[p] % (len(kinds) + 1)]
                summary = self._summary(name, verifier, batch.column("ability")[row].as_py())
                if summary.verifier == verifier:
                    summary.count += int(counts[p])
                else:
                    for clash in rows[pair_of.reshape(-1) == p].tolist():
                        clashes[clash] = (name, verifier)
        for row in sorted([*errors, *clashes]):
            if row in errors:
                for error in errors[row]:
                    self._error(first + row, error.field, error.message)
                self.report.invalid_rows += 1
            else:
                self._clash(first + row, *clashes[row])
        self.report.rows += n
