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

from trainer.data.images import DEFAULT_MAX_IMAGE_PIXELS
from trainer.data.reader import iter_samples
from trainer.data.resolvers import open_resolver
from trainer.data.schema import ImageResolver, task_type, validate_sample


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
    """
    if max_errors < 0:
        raise ValueError(f"max_errors must be >= 0, got {max_errors}")
    resolver: ImageResolver | None
    if isinstance(images_root, str):
        resolver = open_resolver(images_root, storage_options=dict(storage_options or {}))
    else:
        resolver = images_root
    report = FileReport()

    def add(row: int, field_name: str, message: str) -> None:
        report.error_count += 1
        if len(report.errors) < max_errors:
            report.errors.append(RowError(row, field_name, message))

    for number, sample in enumerate(iter_samples(uri, storage_options=storage_options), start=1):
        report.rows = number
        errors = validate_sample(
            sample,
            check_images=check_images,
            decode_images=decode_images,
            max_image_pixels=max_image_pixels,
            resolve_image=resolver,
        )
        for error in errors:
            add(number, error.field, error.message)
        if errors:
            report.invalid_rows += 1
            continue
        name = sample["data_source"]
        verifier = sample["reward_model"].get("verifier", "")
        summary = report.sources.get(name)
        if summary is None:
            summary = report.sources[name] = SourceSummary(name, task_type(sample), verifier)
        elif summary.verifier != verifier:
            add(
                number,
                "reward_model.verifier",
                f"source {name!r} uses verifier {summary.verifier!r} in earlier rows, {verifier!r} here;"
                " give each verifier its own data_source",
            )
            report.invalid_rows += 1
            continue
        summary.count += 1
    return report
