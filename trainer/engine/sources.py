"""The rows of every data source of a run, train and test, read once through fsspec.

Rows are held in memory (images as encoded bytes) so that the mixture sampler can address
any row by index. A source without test files holds out ``data.test_fraction`` of its
training rows by the stable hash split of :mod:`trainer.data.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.config import ResolvedSource
from trainer.data.reader import DataFormatError, iter_dataset
from trainer.data.resolvers import ImageResolveError
from trainer.data.splits import split_of
from trainer.engine.errors import PreflightError, Problem

Row = dict[str, Any]


@dataclass
class SourceData:
    """The rows of one source of the mixture; ``name`` is the name metrics are reported under."""

    name: str
    weight: float
    train: list[Row]
    test: list[Row] = field(default_factory=list)
    # Where row i of a split came from: (file URI, row number in that file, 1-based), for messages.
    train_origin: list[tuple[str, int]] = field(default_factory=list)
    test_origin: list[tuple[str, int]] = field(default_factory=list)

    def origin(self, split: str, index: int) -> str:
        """``"file.parquet, row 3"``: the file and row that row ``index`` of ``split`` came from."""
        origins = self.train_origin if split == "train" else self.test_origin
        if index < len(origins):
            uri, number = origins[index]
            return f"{uri.rsplit('/', 1)[-1]}, row {number}"
        return f"row {index + 1}"

    def where(self, split: str, index: int) -> str:
        """``"synth_math train (file.parquet, row 3)"``: where a row came from, for error messages."""
        return f"{self.name} {split} ({self.origin(split, index)})"


def _read(uris: Sequence[str], images: str | None) -> tuple[list[Row], list[tuple[str, int]]]:
    rows: list[Row] = []
    origins: list[tuple[str, int]] = []
    for uri in uris:
        for number, row in enumerate(iter_dataset([uri], images_root=images), start=1):
            rows.append(row)
            origins.append((uri, number))
    return rows, origins


def load_source(source: ResolvedSource, *, test_fraction: float = 0.0, seed: int = 0) -> SourceData:
    """Read one source; raises :class:`PreflightError` naming the file when one cannot be read."""
    try:
        train, train_origin = _read(source.train, source.images)
        test, test_origin = _read(source.test, source.images)
    except (DataFormatError, ImageResolveError, OSError) as exc:
        raise PreflightError([Problem(source.name, str(exc))]) from None
    if not source.test and test_fraction > 0:
        kept, kept_origin = [], []
        for index, (row, origin) in enumerate(zip(train, train_origin, strict=True)):
            if split_of(row, index, seed=seed, test_fraction=test_fraction) == "test":
                test.append(row)
                test_origin.append(origin)
            else:
                kept.append(row)
                kept_origin.append(origin)
        train, train_origin = kept, kept_origin
    if not train:
        raise PreflightError([Problem(source.name, "has no training rows; give it at least one")])
    return SourceData(source.name, source.weight, train, test, train_origin, test_origin)


def load_sources(
    sources: Sequence[ResolvedSource], *, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, SourceData]:
    """Every source, in order; the problems of all sources are reported together."""
    loaded: dict[str, SourceData] = {}
    problems: list[Problem] = []
    for source in sources:
        try:
            loaded[source.name] = load_source(source, test_fraction=test_fraction, seed=seed)
        except PreflightError as exc:
            problems += exc.problems
    if problems:
        raise PreflightError(problems)
    return loaded
