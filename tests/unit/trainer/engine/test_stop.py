"""stop_on_signals: the first SIGTERM/SIGINT is recorded, the second one is left to kill."""

from __future__ import annotations

import doctest
import os
import signal
import threading
import time

import pytest

from trainer.engine import stop as stop_module
from trainer.engine.stop import StopRequest, stop_on_signals


def _until(condition, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("signum", "name", "status"), [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "SIGINT", 130)]
)
def test_the_first_signal_is_recorded_and_the_next_one_gets_the_default_action(
    signum: int, name: str, status: int, capfd
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as stop:
        assert not stop.requested and stop.name == ""
        os.kill(os.getpid(), signum)
        _until(lambda: stop.requested)
        assert (stop.name, stop.exit_status) == (name, status)
        # a second signal of either kind would now end the process
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert capfd.readouterr().err == (
        f"train: {name} received; stopping after the current step (send it again to stop at once)\n"
    )


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[tuple[bool, object]] = []

    def body() -> None:
        with stop_on_signals() as stop:
            seen.append((stop.requested, signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [(False, before)]


def test_no_exit_status_without_a_stop() -> None:
    with pytest.raises(ValueError, match="^no stop was requested$"):
        StopRequest().exit_status  # noqa: B018


def test_docstring_examples() -> None:
    result = doctest.testmod(stop_module)
    assert result.failed == 0 and result.attempted > 0
