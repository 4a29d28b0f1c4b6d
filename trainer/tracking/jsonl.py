"""Append-only JSONL of a run's metrics and events.

One line per point, ``{"step", "source", "key", "value"}``: the same object the platform's
ingest API takes, so a file can be replayed or imported as is, and a line is never more than
one value (easy to grep, to tail, and to cut at a crash without losing earlier steps). Events
are lines with an ``event`` field instead of ``key``. The file is flushed after every call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, SupportsFloat

from trainer.monitor.records import MetricKey
from trainer.tracking.base import EventValue, Point, Tracker, metrics_to_points


def dump_line(obj: object) -> str:
    """Compact strict JSON (no NaN) plus newline."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def open_append(path: Path) -> IO[str]:
    """Open ``path`` for appending lines, creating parents; a line torn by a crash is ended first.

    Without that, the first line written after a crash would be glued to the torn one and be
    lost with it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as raw:
            raw.seek(-1, 2)
            torn = raw.read(1) != b"\n"
    handle = path.open("a", encoding="utf-8")
    if torn:
        handle.write("\n")
    return handle


class JsonlSink(Tracker):
    """Appends points and events to ``path`` (parent directories are created)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._handle: IO[str] | None = None

    def _file(self) -> IO[str]:
        if self._handle is None:
            self._handle = open_append(self.path)
        return self._handle

    def log(self, step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> None:
        handle = self._file()
        handle.write("".join(dump_line(point) for point in metrics_to_points(step, metrics)))
        handle.flush()

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        data: Mapping[str, EventValue] | None = None,
    ) -> None:
        line = {
            "event": kind,
            "message": message,
            "step": step,
            "data": dict(data or {}),
            "time": self._clock(),
        }
        handle = self._file()
        handle.write(dump_line(line))
        handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_points(path: str | Path) -> Iterator[Point]:
    """The metric points of a JSONL file written by :class:`JsonlSink`.

    Event lines are skipped, and so is a line torn by a crash (it cannot be parsed).
    """
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "key" in obj:
                yield Point(step=obj["step"], source=obj["source"], key=obj["key"], value=obj["value"])
