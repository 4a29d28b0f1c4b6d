"""The body of a reward pool worker process (see :mod:`trainer.rewards.pool`).

Protocol on the worker's pipe: the worker sends ``("ready", pid)`` once it has imported and
warmed up; then it receives chunks ``[(task_id, RewardRequest), ...]`` (``None`` to stop) and
answers each task with ``(task_id, rewards, error)`` as soon as it is scored.
"""

from __future__ import annotations

import importlib
import os
import signal
from multiprocessing.connection import Connection

from trainer.rewards.requests import RewardRequest, score_request


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def limit_memory(extra_mb: int | None) -> None:
    """Cap this process's address space at its current size plus ``extra_mb`` (Linux).

    Past the cap an allocation raises ``MemoryError`` (scored as an error) instead of the
    machine swapping; e.g. sympy expanding ``9^{9^{9^{9}}}``.
    """
    if not extra_mb:
        return
    current = _vm_bytes()
    if current is None:
        return
    import resource

    limit = current + extra_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _warm_up() -> None:
    # The first math-verify call compiles its regular expressions and grammar (~0.1 s): pay it
    # before reporting ready, so that it does not count against a sample's time limit.
    score_request(RewardRequest("\\boxed{1}", {"verifier": "mathverify", "ground_truth": "\\boxed{1}"}))


def worker_main(conn: Connection, memory_limit_mb: int | None, imports: tuple[str, ...] = ()) -> None:
    """Serve chunks from ``conn`` until it closes or sends ``None``; ``imports`` are imported first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # So is SIGTERM (Ray's stop_job signals every process of the job): the parent finishes its
    # step, then closes the pool. A worker whose pool is gone sees its pipe close and exits.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    for module in imports:
        importlib.import_module(module)
    _warm_up()
    limit_memory(memory_limit_mb)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for task_id, request in chunk:
            result = score_request(request)
            conn.send((task_id, result.rewards, result.error))
