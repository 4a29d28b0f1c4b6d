"""Stopping a run cleanly on SIGTERM or SIGINT.

A cancelled platform run gets SIGTERM: Ray's ``stop_job`` sends it to the job's entrypoint and
to every process under it (the reward pool's too), waits ``RAY_JOB_STOP_WAIT_TIME_S`` (3 s by
default), then sends SIGKILL. Ctrl-C sends SIGINT.

The handler only records the signal; :func:`trainer.engine.run_loop` looks at the record
between steps, so a step under way is finished (rollout, scoring, update, metrics), never torn
inside torch, and the run then saves a checkpoint of that step and returns. The stop therefore
waits for the current step: give the job a stop wait longer than one step plus a checkpoint
save. The first signal puts back the default action of both signals, so a second one ends the
process at once (killed by the signal, no checkpoint; the atomic checkpoint writer leaves at
worst a ``.tmp-*`` directory that the next save removes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Whether a stop was asked, and by which signal; set by :func:`stop_on_signals`."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """``SIGTERM``, ``SIGINT``; empty while no stop was asked."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_status(self) -> int:
        """The shell's status of a process ended by the signal: 128 + its number (143, 130).

        >>> stop = StopRequest()
        >>> stop.signum = signal.SIGTERM
        >>> stop.name, stop.exit_status
        ('SIGTERM', 143)
        """
        if self.signum is None:
            raise ValueError("no stop was requested")
        return 128 + self.signum

    def request(self, signum: int) -> None:
        """Record a stop (the first signal wins)."""
        if self.signum is None:
            self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the first of ``signals`` is recorded instead of ending the process.

    The previous handlers come back when the block ends. Outside the main thread (where Python
    cannot install handlers) the request is never set and the signals keep their actions.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.request(signum)
        for sig in signals:
            signal.signal(sig, signal.SIG_DFL)
        name = signal.Signals(signum).name
        line = f"train: {name} received; stopping after the current step (send it again to stop at once)\n"
        os.write(2, line.encode())  # not print: the handler may run while the main thread is in one

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield stop
    finally:
        for sig, action in previous.items():
            if action is not None:  # None: a handler installed outside Python, which cannot be put back
                signal.signal(sig, action)
