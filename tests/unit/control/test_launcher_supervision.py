"""``./triune up`` starts a web, worker or beat process again when it exits, and stops when one keeps
exiting (real child processes; the clock is the test's)."""

from __future__ import annotations

import subprocess
import sys

from control.launcher import RESTART_LIMIT, RESTART_WINDOW_S, Child


def _exits(code: int):
    def start() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        process.wait(30)
        return process

    return start


def _runs() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_process_that_exits_is_started_again():
    starts = []

    def start() -> subprocess.Popen:
        starts.append(1)
        return _exits(3)() if len(starts) == 1 else _runs()

    child = Child("web server", start).launch()
    try:
        assert child.check(now=100.0) is None  # it had exited: started again
        assert len(starts) == 2 and child.process.poll() is None
        assert child.check(now=101.0) is None and len(starts) == 2  # running: left alone
    finally:
        child.process.kill()
        child.process.wait(10)


def test_a_process_that_keeps_exiting_stops_up_with_the_reason():
    child = Child("celery worker", _exits(7)).launch()
    for n in range(RESTART_LIMIT):
        assert child.check(now=1000.0 + n) is None
    reason = child.check(now=1000.0 + RESTART_LIMIT)
    assert reason == (
        f"the celery worker exited with 7, its {RESTART_LIMIT + 1}th exit within {RESTART_WINDOW_S:.0f} s; "
        "stopping"
    )


def test_exits_spread_over_time_never_stop_up():
    child = Child("celery beat", _exits(1)).launch()
    for n in range(3 * RESTART_LIMIT):
        assert child.check(now=n * (RESTART_WINDOW_S / (RESTART_LIMIT - 1))) is None
