"""Train/test splits: by deterministic hash per row, or by file name.

Hash split: a row goes to ``test`` when ``blake2b(seed, key)`` mapped to [0, 1)
is below ``test_fraction``; the key is ``extra_info.id`` when the row has one
(so a row keeps its split when the file is reordered or grows), else its index
in the file. The same seed always gives the same split, on any machine.

File split: Orsta-Data-47k names its files ``{split}_{task}_{source}_{n}.parquet``
(``train_detection_v3det_train_4000.parquet``); :func:`parse_split_name` reads
that name back and :func:`split_file_name` writes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.schema import TASK_TYPES

SPLITS = ("train", "test")
_NAME = re.compile(
    r"^(?P<split>train|test)_(?P<task>[a-z]+)_(?P<source>.+)_(?P<count>\d+)\.(?P<ext>parquet|jsonl|jsonl\.gz)$"
)


def _unit_interval(seed: int, key: str) -> float:
    """A stable hash of (seed, key) mapped to [0, 1)."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_key(row: Mapping[str, Any], index: int) -> str:
    """``id:<extra_info.id>`` when the row has an id, else ``row:<index>``."""
    extra = row.get("extra_info")
    if isinstance(extra, Mapping):
        sample_id = extra.get("id")
        if isinstance(sample_id, str) and sample_id:
            return f"id:{sample_id}"
    return f"row:{index}"


def split_of(row: Mapping[str, Any], index: int, *, seed: int = 0, test_fraction: float = 0.1) -> str:
    """``"train"`` or ``"test"`` for one row (see the module docstring)."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    return "test" if _unit_interval(seed, split_key(row, index)) < test_fraction else "train"


def split_rows(
    rows: Iterable[Mapping[str, Any]], split: str, *, seed: int = 0, test_fraction: float = 0.1
) -> Iterator[Mapping[str, Any]]:
    """The rows of ``rows`` that fall in ``split``, streaming."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    for index, row in enumerate(rows):
        if split_of(row, index, seed=seed, test_fraction=test_fraction) == split:
            yield row


@dataclass(frozen=True, slots=True)
class SplitFile:
    """The parts of a ``{split}_{task}_{source}_{n}.{ext}`` file name."""

    split: str
    task: str
    source: str
    count: int
    ext: str


def split_file_name(split: str, task: str, source: str, count: int, ext: str = "parquet") -> str:
    """Orsta's file name for one split of one source.

    >>> split_file_name("train", "math", "synth_math", 800)
    'train_math_synth_math_800.parquet'
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_TYPES)}")
    if not source or "/" in source or source != source.strip():
        raise ValueError(f"source {source!r} cannot be part of a file name")
    return f"{split}_{task}_{source}_{count}.{ext}"


def parse_split_name(name: str) -> SplitFile | None:
    """Read a ``{split}_{task}_{source}_{n}.{ext}`` name (directories ignored); None when it is not one.

    >>> parse_split_name("data/test_detection_v3det_train_200.parquet")
    SplitFile(split='test', task='detection', source='v3det_train', count=200, ext='parquet')
    """
    match = _NAME.match(name.rsplit("/", 1)[-1])
    if match is None or match["task"] not in TASK_TYPES:
        return None
    return SplitFile(match["split"], match["task"], match["source"], int(match["count"]), match["ext"])


def group_split_files(uris: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """``{source: {split: [uri, ...]}}`` for the files named in Orsta's way; other names raise."""
    grouped: dict[str, dict[str, list[str]]] = {}
    for uri in uris:
        parsed = parse_split_name(uri)
        if parsed is None:
            raise ValueError(
                f"{uri!r} is not named {{split}}_{{task}}_{{source}}_{{n}}.parquet"
                f" (split in {', '.join(SPLITS)}, task in {', '.join(TASK_TYPES)})"
            )
        grouped.setdefault(parsed.source, {}).setdefault(parsed.split, []).append(uri)
    return grouped
