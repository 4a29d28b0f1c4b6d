"""A SIGTERM sent to every process of a job (Ray's stop_job) leaves the reward pool working.

The trainer finishes its step after the signal; the pool's workers, and the forkserver through
which the pool watches them, must neither die nor look dead meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from trainer.rewards import RewardPool, RewardRequest

MATH = {"verifier": "mathverify", "ground_truth": "\\boxed{\\frac{1}{2}}"}


def _ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_sigterm_to_the_workers_and_their_forkserver_changes_nothing(start_method: str) -> None:
    batch = [RewardRequest(f"\\boxed{{{n}/2}}", MATH) for n in range(40)]
    with RewardPool(workers=2, timeout_s=30, start_method=start_method) as pool:
        expected = pool.score(batch)
        workers = pool.worker_pids()
        others = {_parent(pid) for pid in workers} - {os.getpid()}  # the forkserver, if any
        assert len(others) == (1 if start_method == "forkserver" else 0)
        targets = [*workers, *others]
        # checked before any signal goes out: a process that would die is never sent one (a
        # spawned worker may still be starting: it ignores SIGTERM once worker_main runs)
        deadline = time.monotonic() + 60
        while not all(_ignores_sigterm(pid) for pid in targets):
            assert time.monotonic() < deadline, "a reward process does not ignore SIGTERM"
            time.sleep(0.05)
        for pid in targets:
            os.kill(pid, signal.SIGTERM)
        assert pool.score(batch) == expected
        assert all(r.error is None for r in expected)
        assert (pool.restarts, pool.crashes) == (0, 0)
        assert pool.worker_pids() == workers
