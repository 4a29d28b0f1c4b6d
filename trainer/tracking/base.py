"""The tracker interface, the point format every sink shares, and a fan-out sink."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import SupportsFloat, TypedDict

from trainer.monitor.records import MetricKey
from trainer.monitor.values import finalize

EventValue = str | int | float | bool | None


class Point(TypedDict):
    """One metric value: the unit of the JSONL file and of the platform's ingest API."""

    step: int
    source: str | None
    key: str
    value: float


def metrics_to_points(step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> list[Point]:
    """``{(source, key): value}`` → points in a stable order (global first, then by source, key).

    Undefined values are dropped by the monitor's single rule (:func:`trainer.monitor.values.finalize`).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    clean = finalize(metrics)
    ordered = sorted(clean.items(), key=lambda item: (item[0][0] is not None, item[0][0] or "", item[0][1]))
    return [Point(step=step, source=source, key=key, value=value) for (source, key), value in ordered]


class Tracker(ABC):
    """Where a run's metrics and events go. Usable as a context manager (``close`` on exit)."""

    @abstractmethod
    def log(self, step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> None:
        """Record the metrics of one step."""

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        data: Mapping[str, EventValue] | None = None,
    ) -> None:
        """Record something that happened (``checkpoint``, ``eval``, ``nan_step``, ``finished``...).

        Sinks that have nowhere to put events ignore them.
        """
        return None

    def close(self) -> None:
        """Flush and release resources; calling it twice is harmless."""
        return None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class MultiSink(Tracker):
    """Sends everything to several sinks; one failing sink does not starve the others.

    The first error raised by a sink is re-raised after every sink had its turn.
    """

    def __init__(self, sinks: Iterable[Tracker]) -> None:
        self.sinks: list[Tracker] = list(sinks)

    def _each(self, call: str, *args: object, **kwargs: object) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                getattr(sink, call)(*args, **kwargs)
            except Exception as exc:  # re-raised below once every sink ran
                first = first or exc
        if first is not None:
            raise first

    def log(self, step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> None:
        self._each("log", step, metrics)

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        data: Mapping[str, EventValue] | None = None,
    ) -> None:
        self._each("log_event", kind, message, step=step, data=data)

    def close(self) -> None:
        self._each("close")
