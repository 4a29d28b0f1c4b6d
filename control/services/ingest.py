"""Validation and normalisation of uploaded sample files into per-source parquet files.

Every row is read streaming (trainer.data.reader), checked with the one sample
schema (trainer.data.schema.validate_sample; parquet a record batch at a time with
trainer.data.columnar.batch_errors, which gives the same verdicts) and, when valid, written to
``{split}_{task}_{source}_{n}.parquet`` in a staging directory: one file per
(source, split), in the Orsta-Data-47k layout, images embedded as bytes. Nothing
is held whole in memory: rows are buffered per output file up to one row group.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from trainer.data.columnar import batch_errors
from trainer.data.image_headers import PNG_SIGNATURE
from trainer.data.reader import (
    ORSTA_SCHEMA,
    DataFormatError,
    batch_to_rows,
    file_format,
    iter_parquet_batches,
    iter_samples,
    prefetch,
)
from trainer.data.resolvers import ARCHIVE_SUFFIXES, ImageResolveError, open_resolver
from trainer.data.schema import SampleError, validate_sample
from trainer.data.schema import task_type as infer_task_type
from trainer.data.splits import parse_split_name, split_of

ROW_GROUP_ROWS = 256
REPORT_ERROR_ROWS = 200
DATA_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")
ANSWER_LENGTH_BINS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class StagedFile:
    """A file received and kept in the staging area; ``name`` is its sanitised base name."""

    name: str
    path: Path


@dataclass
class RowError:
    file: str
    row: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "field": self.field, "message": self.message}


@dataclass
class SourceSummary:
    name: str
    task_type: str = ""
    verifier: str = ""
    counts: Counter = field(default_factory=Counter)  # split -> rows
    files: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    answer_lengths: Counter = field(default_factory=Counter)  # bin lower bound -> rows
    boxes_per_sample: Counter = field(default_factory=Counter)
    image_sizes: Counter = field(default_factory=Counter)  # "WxH" -> rows (first image)

    def stats(self) -> dict:
        return {
            "answer_length_histogram": {str(k): v for k, v in sorted(self.answer_lengths.items())},
            "boxes_per_sample": {str(k): v for k, v in sorted(self.boxes_per_sample.items())},
            "image_sizes": dict(self.image_sizes.most_common(20)),
        }


@dataclass
class IngestResult:
    total_rows: int = 0
    valid_rows: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first REPORT_ERROR_ROWS
    error_count: int = 0
    sources: dict[str, SourceSummary] = field(default_factory=dict)

    def report(self) -> dict:
        return {
            "total_rows": self.total_rows,
            "valid_rows": self.valid_rows,
            "invalid_rows": self.total_rows - self.valid_rows,
            "error_count": self.error_count,
            "errors": [e.as_dict() for e in self.errors],
            "sources": {
                name: {"task_type": s.task_type, "verifier": s.verifier, "counts": dict(s.counts)}
                for name, s in sorted(self.sources.items())
            },
        }


class IngestError(ValueError):
    """A file that cannot be ingested at all (unreadable, wrong schema, wrong mix of files)."""


def sanitize_filename(name: str) -> str:
    """The base name of an uploaded file, restricted to a safe character set."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:200].lstrip(".")
    if not base:
        raise IngestError(f"file name {name[:80]!r} has no usable characters; rename the file")
    return base


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(files: list[StagedFile]) -> str:
    """One hash for a set of files: names and contents, independent of upload order."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(f.name.encode() + b"\0" + sha256_file(f.path).encode() + b"\n")
    return digest.hexdigest()


def classify(files: list[StagedFile]) -> tuple[list[StagedFile], StagedFile | None]:
    """Split files into data files and at most one image archive; refuse anything else."""
    data, archives = [], []
    for f in files:
        lower = f.name.lower()
        if lower.endswith(DATA_SUFFIXES):
            data.append(f)
        elif lower.endswith(ARCHIVE_SUFFIXES):
            archives.append(f)
        else:
            raise IngestError(
                f"{f.name}: unsupported file type; upload .parquet, .jsonl or .jsonl.gz sample files"
                " and at most one .zip/.tar/.tar.gz archive of images"
            )
    if not data:
        raise IngestError("no sample file: upload at least one .parquet, .jsonl or .jsonl.gz file")
    if len(archives) > 1:
        raise IngestError(f"{len(archives)} image archives; upload at most one (.zip, .tar or .tar.gz)")
    return data, archives[0] if archives else None


class _ServerPaths:
    """Replaces the server's paths of the staged files (and their folders) in a message by the user's names.

    Readers name the file they read (``archive /srv/.../staging/upload-x/imgs.zip is not ...``);
    what reaches the user must name only the file they sent.
    """

    def __init__(self, files: list[StagedFile], *folders: Path) -> None:
        pairs: dict[str, str] = {}
        for f in files:
            for form in (f.path.resolve().as_uri(), f.path.as_uri(), str(f.path.resolve()), str(f.path)):
                pairs[form] = f.name
        for folder in {*folders, *(f.path.parent for f in files)}:
            for form in (folder.resolve().as_uri(), folder.as_uri(), str(folder.resolve()), str(folder)):
                pairs.setdefault(form, "<upload>")
        # Longest first, so that a file's path is replaced before the folder holding it.
        self.pairs = sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)

    def __call__(self, message: str) -> str:
        for server, public in self.pairs:
            message = message.replace(server, public)
        return message


def _answer_bin(length: int) -> int:
    return max(b for b in ANSWER_LENGTH_BINS if b <= length)


def _image_size(data: bytes) -> str | None:
    if data[:8] == PNG_SIGNATURE and len(data) >= 24:  # IHDR's width and height, as PIL reads them
        width, height = struct.unpack_from(">II", data, 16)
        return f"{width}x{height}"
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.width}x{image.height}"
    except Exception:  # noqa: BLE001 - the validator already reported undecodable images
        return None


def _safe_source_name(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", source)[:80] or "source"


class _Writers:
    """One parquet writer per (source, split), flushed a row group at a time."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.buffers: dict[tuple[str, str], list[dict]] = defaultdict(list)
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.paths: dict[tuple[str, str], Path] = {}
        self.counts: Counter = Counter()
        self.tasks: dict[str, str] = {}

    def add(self, source: str, split: str, task: str, row: dict) -> None:
        key = (source, split)
        self.tasks.setdefault(source, task)
        self.buffers[key].append(row)
        self.counts[key] += 1
        if len(self.buffers[key]) >= ROW_GROUP_ROWS:
            self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        rows = self.buffers[key]
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=ORSTA_SCHEMA)
        if key not in self.writers:
            index = len(self.writers)
            path = self.out_dir / f"part-{index:05d}.parquet"
            self.paths[key] = path
            self.writers[key] = pq.ParquetWriter(path, ORSTA_SCHEMA, compression="zstd")
        self.writers[key].write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.buffers[key] = []

    def close(self) -> dict[tuple[str, str], Path]:
        """Flush and close everything; rename files to the Orsta naming and return them."""
        for key in list(self.buffers):
            self._flush(key)
        final: dict[tuple[str, str], Path] = {}
        used: set[str] = set()
        for key, writer in self.writers.items():
            writer.close()
            source, split = key
            name = f"{split}_{self.tasks[source]}_{_safe_source_name(source)}_{self.counts[key]}.parquet"
            n = 1
            while name in used:
                n += 1
                name = (
                    f"{split}_{self.tasks[source]}_{_safe_source_name(source)}-{n}_{self.counts[key]}.parquet"
                )
            used.add(name)
            target = self.out_dir / name
            self.paths[key].rename(target)
            final[key] = target
        return final

    def abort(self) -> None:
        for writer in self.writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - cleaning up after a failure
                pass


def _checked_rows(
    f: StagedFile, *, max_image_pixels: int, resolve: Callable[[str], bytes] | None
) -> Iterator[tuple[int, dict, list[SampleError]]]:
    """(row number from 1, row, its problems) for every row of ``f``.

    A parquet file is checked a record batch at a time (trainer.data.columnar.batch_errors:
    validate_sample's verdicts without a Python pass over every column); JSONL row by row,
    with ``resolve`` for its image paths.
    """
    try:
        if resolve is None and file_format(str(f.path)) == "parquet":
            number = 0
            for batch in prefetch(iter_parquet_batches(str(f.path), batch_rows=None)):
                errors = batch_errors(batch, max_image_pixels=max_image_pixels)
                for index, row in enumerate(batch_to_rows(batch)):
                    number += 1
                    yield number, row, errors.get(index, [])
            return
        for number, row in enumerate(iter_samples(str(f.path)), start=1):
            yield number, row, validate_sample(row, max_image_pixels=max_image_pixels, resolve_image=resolve)
    except DataFormatError as exc:
        raise IngestError(f"{f.name}: {exc.reason}" + (f" (line {exc.line})" if exc.line else "")) from None


def ingest_files(
    files: list[StagedFile],
    out_dir: Path,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_image_pixels: int = 50_000_000,
    errors_csv: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Validate every row of ``files`` and write the valid ones under ``out_dir``.

    Raises :class:`IngestError` for a file that cannot be read at all. Rows that
    fail validation are counted and listed (the caller's policy decides whether
    any failed row refuses the upload).
    """
    data_files, archive = classify(files)
    public = _ServerPaths(files, out_dir)
    try:
        return _ingest(
            data_files, archive, out_dir, public, test_fraction, seed, max_image_pixels, errors_csv, progress
        )
    except IngestError as exc:
        raise IngestError(public(str(exc))) from None


def _ingest(
    data_files: list[StagedFile],
    archive: StagedFile | None,
    out_dir: Path,
    public: Callable[[str], str],
    test_fraction: float,
    seed: int,
    max_image_pixels: int,
    errors_csv: Path | None,
    progress: Callable[[int], None] | None,
) -> IngestResult:
    resolver = open_resolver(str(archive.path)) if archive is not None else None
    result = IngestResult()
    tasks: dict[tuple, str] = {}
    writers = _Writers(out_dir)
    csv_handle = open(errors_csv, "w", newline="") if errors_csv else None
    csv_writer = csv.writer(csv_handle) if csv_handle else None
    if csv_writer:
        csv_writer.writerow(["file", "row", "field", "message"])

    def resolve(path: str) -> bytes:
        if resolver is None:
            raise ImageResolveError(f"image {path[:80]!r} is a path but no image archive was uploaded")
        return resolver(path)

    try:
        for f in data_files:
            is_jsonl = file_format(f.name) == "jsonl"
            named = parse_split_name(f.name)
            checked = _checked_rows(
                f, max_image_pixels=max_image_pixels, resolve=resolve if is_jsonl else None
            )
            for index, row, problems in checked:
                result.total_rows += 1
                if not problems and is_jsonl:
                    try:
                        row = {**row, "images": [{"bytes": resolve(p), "path": p} for p in row["images"]]}
                    except (ImageResolveError, TypeError) as exc:
                        problems = [SampleError("images", str(exc))]
                if problems:
                    result.error_count += len(problems)
                    for p in problems:
                        error = RowError(f.name, index, p.field, public(p.message))
                        if len(result.errors) < REPORT_ERROR_ROWS:
                            result.errors.append(error)
                        if csv_writer:
                            csv_writer.writerow([f.name, index, p.field, error.message])
                    continue
                result.valid_rows += 1
                source = row["data_source"]
                split = named.split if named else split_of(row, index, seed=seed, test_fraction=test_fraction)
                # The task type depends on these three only: inferred once per distinct triple.
                triple = (row["ability"], source, row["reward_model"].get("verifier"))
                task = tasks.get(triple)
                if task is None:
                    task = tasks[triple] = infer_task_type(row)
                summary = result.sources.get(source)
                if summary is None:
                    summary = result.sources[source] = SourceSummary(
                        name=source, task_type=task, verifier=str(row["reward_model"].get("verifier", ""))
                    )
                summary.counts[split] += 1
                reward_model = row["reward_model"]
                answer = reward_model.get("answer") or reward_model.get("ground_truth") or ""
                summary.answer_lengths[_answer_bin(len(str(answer)))] += 1
                if summary.verifier == "detection":
                    summary.boxes_per_sample[str(reward_model.get("ground_truth", "")).count("bbox_2d")] += 1
                if row["images"]:
                    size = _image_size(row["images"][0]["bytes"])
                    if size:
                        summary.image_sizes[size] += 1
                writers.add(source, split, task, row)
                if progress is not None and result.total_rows % 1000 == 0:
                    progress(result.total_rows)
        final = writers.close()
    except BaseException:
        writers.abort()
        raise
    finally:
        if csv_handle:
            csv_handle.close()
        if resolver is not None and hasattr(resolver, "close"):
            resolver.close()
    for (source, split), path in final.items():
        result.sources[source].files[split].append(path.name)
    return result
