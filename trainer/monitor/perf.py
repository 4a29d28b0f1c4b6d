"""Timing and memory of a step: ``perf/*`` metrics (global)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

from trainer.monitor.records import MetricKey, Metrics
from trainer.monitor.values import finalize

GIB = float(1 << 30)


class Timer:
    """Wall-clock seconds of a ``with`` block.

    >>> with Timer() as t:
    ...     pass
    >>> t.seconds >= 0
    True
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start: float | None = None
        self.seconds: float = 0.0

    def __enter__(self) -> Timer:
        self._start = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._start is None:
            raise RuntimeError("Timer exited without being entered")
        self.seconds = self._clock() - self._start


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process in bytes, or None where the OS does not say.

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS.
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def perf_metrics(
    *,
    step_time: float,
    rollout_time: float | None = None,
    reward_time: float | None = None,
    update_time: float | None = None,
    num_tokens: int | None = None,
    peak_memory_bytes: int | None = None,
) -> Metrics:
    """``perf/*`` for one step; ``tokens_per_s`` = ``num_tokens`` (prompt + response) / ``step_time``.

    A value not given, or a throughput over a zero-length step, is omitted.
    """
    tokens_per_s = num_tokens / step_time if num_tokens is not None and step_time > 0 else None
    values: dict[MetricKey, float | None] = {
        (None, "perf/step_time"): step_time,
        (None, "perf/rollout_time"): rollout_time,
        (None, "perf/reward_time"): reward_time,
        (None, "perf/update_time"): update_time,
        (None, "perf/tokens_per_s"): tokens_per_s,
        (None, "perf/peak_memory"): None if peak_memory_bytes is None else peak_memory_bytes / GIB,
    }
    return finalize(values)
