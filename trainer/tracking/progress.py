"""A plain progress bar for long phases (evaluation, scoring a big batch), on stderr.

On a terminal it redraws one line (``\\r``) at most every ``min_interval_s``; in a log file
(Ray job logs, CI) it writes a full line at each 10 % instead, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

from trainer.tracking.console import format_duration


class ProgressBar:
    """``with ProgressBar(total=200, desc="eval") as bar: ... bar.update()``."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.2,
        width: int = 24,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0 or None, got {total}")
        self.total = total
        self.desc = desc
        self.count = 0
        self._stream = stream
        self._clock = clock
        self._min_interval = min_interval_s
        self._width = width
        self._start = clock()
        self._last_draw: float | None = None
        self._last_decile = -1
        self._closed = False

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def _interactive(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def render(self, now: float | None = None) -> str:
        """The bar as text, e.g. ``eval [#######-----------------] 30/100 30% 12.0/s ETA 6s``."""
        elapsed = (self._clock() if now is None else now) - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc} " if self.desc else ""
        if not self.total:
            return f"{head}{self.count} done {rate:.1f}/s"
        fraction = min(1.0, self.count / self.total)
        filled = int(fraction * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        eta = f" ETA {format_duration((self.total - self.count) / rate)}" if rate > 0 and fraction < 1 else ""
        return f"{head}[{bar}] {self.count}/{self.total} {fraction:.0%} {rate:.1f}/s{eta}"

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` items and redraw when due."""
        self.count += n
        now = self._clock()
        if self._interactive():
            if self._last_draw is None or now - self._last_draw >= self._min_interval:
                self.stream.write("\r" + self.render(now))
                self.stream.flush()
                self._last_draw = now
            return
        if self.total:
            decile = min(10, self.count * 10 // self.total)
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                self.stream.write(self.render(now) + "\n")
                self.stream.flush()

    def close(self) -> None:
        """Write the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        prefix = "\r" if self._interactive() else ""
        self.stream.write(prefix + self.render() + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
