"""A compact progress line per step on the console.

``step 12/100 | reward 0.532 | acc math 0.41 det 0.22 | 3.21 s/step | ETA 4m41s``

The reward is ``reward/final`` over the whole step, the accuracy ``reward/accuracy`` per
source, the step time ``perf/step_time`` (or the time since the previous line when it is not
logged), and the ETA the mean of the last ten step times times the steps left.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, SupportsFloat

from trainer.monitor.records import MetricKey
from trainer.monitor.values import finalize
from trainer.tracking.base import EventValue, Tracker

SHORT_NAME = 12


def format_duration(seconds: float) -> str:
    """``42`` → ``42s``, ``288`` → ``4m48s``, ``7384`` → ``2h03m``.

    >>> format_duration(288)
    '4m48s'
    """
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def short_names(sources: list[str], width: int = SHORT_NAME) -> dict[str, str]:
    """Source names without their common ``prefix_`` (``synth_math`` → ``math``), cut to ``width``."""
    prefix = ""
    if len(sources) > 1:
        common = sources[0]
        for name in sources[1:]:
            while not name.startswith(common):
                common = common[:-1]
        cut = common.rfind("_") + 1
        prefix = common[:cut]
    return {name: (name[len(prefix) :] or name)[:width] for name in sources}


class ConsoleSink(Tracker):
    """Writes one line per step (and one per event) to ``stream``."""

    def __init__(
        self,
        total_steps: int,
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: int = 10,
    ) -> None:
        self.total_steps = total_steps
        self._stream = stream
        self._clock = clock
        self._times: deque[float] = deque(maxlen=window)
        self._last: float | None = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    def format_line(self, step: int, metrics: Mapping[MetricKey, float]) -> str:
        """The progress line of ``step`` (also records its step time for the ETA)."""
        now = self._clock()
        step_time = metrics.get((None, "perf/step_time"))
        if step_time is None and self._last is not None:
            step_time = now - self._last
        self._last = now
        if step_time is not None:
            self._times.append(step_time)
        parts = [f"step {step}/{self.total_steps}"]
        reward = metrics.get((None, "reward/final"))
        if reward is not None:
            parts.append(f"reward {reward:.3f}")
        accuracy = {s: v for (s, k), v in metrics.items() if s is not None and k == "reward/accuracy"}
        if accuracy:
            names = short_names(sorted(accuracy))
            parts.append("acc " + " ".join(f"{names[s]} {accuracy[s]:.2f}" for s in sorted(accuracy)))
        if step_time is not None:
            parts.append(f"{step_time:.2f} s/step")
        if self._times:
            left = max(0, self.total_steps - step)
            parts.append(f"ETA {format_duration(left * sum(self._times) / len(self._times))}")
        return " | ".join(parts)

    def log(self, step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> None:
        self.stream.write(self.format_line(step, finalize(metrics)) + "\n")
        self.stream.flush()

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        data: Mapping[str, EventValue] | None = None,
    ) -> None:
        where = f" step {step}" if step is not None else ""
        self.stream.write(f"[{kind}]{where}: {message}\n")
        self.stream.flush()
