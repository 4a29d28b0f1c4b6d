"""Score batches across worker processes, with a time limit per sample.

A V-Triune step scores 1024 prompts × 8 responses. math-verify on hostile LaTeX can run for
minutes and its own timeouts only work in a main thread, so scoring runs in worker processes
that the pool watches: a sample that runs past ``timeout_s`` gets its worker killed (and
replaced) and scores 0 with error ``"timeout"``; a worker that dies scores its sample 0 with an
error; neither blocks the rest of the batch. Workers cap their address space
(``memory_limit_mb``) so that a runaway allocation is an error, not a swapping machine.

One dispatcher thread owns the workers; :meth:`RewardPool.score` may be called from any
thread, also from several at once (the reward service does).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from multiprocessing.util import Finalize
from typing import Any

from trainer.rewards.requests import TIMEOUT, RewardRequest, RewardResult, zero_result

_WORKER_MODULE = "trainer.rewards._worker"
_FORKSERVER_MODULE = "trainer.rewards._forkserver"  # makes the forkserver ignore SIGTERM
# A worker that dies this many times in a row before it is ready means the pool cannot work.
MAX_START_FAILURES = 3
# A worker gets this long to import and warm up before it counts as failed to start.
START_TIMEOUT_S = 120.0
# Pools left open are closed at interpreter exit, before multiprocessing waits for its children.
_EXIT_PRIORITY = 100


def _context(start_method: str | None) -> Any:
    """forkserver where available: a replacement worker forks from a process that already
    imported the reward code (milliseconds), and nothing of the caller (torch, threads) leaks in.
    The forkserver and the workers ignore SIGTERM; see :mod:`trainer.rewards._forkserver`."""
    method = start_method or ("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([_FORKSERVER_MODULE, _WORKER_MODULE])
    return ctx


class _Batch:
    def __init__(self, size: int) -> None:
        self.results: list[RewardResult | None] = [None] * size
        self.remaining = size
        self.done = threading.Event()


class _Task:
    __slots__ = ("id", "index", "request", "batch")

    def __init__(self, task_id: int, index: int, request: RewardRequest, batch: _Batch) -> None:
        self.id = task_id
        self.index = index
        self.request = request
        self.batch = batch


class _Worker:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.started = time.monotonic()
        self.chunk: list[_Task] = []
        self.done = 0  # tasks of the chunk answered
        self.progress = 0.0  # when the current task started (its predecessor's answer arrived)

    @property
    def busy(self) -> bool:
        return self.done < len(self.chunk)


def _close_pool(ref: weakref.ref[RewardPool]) -> None:
    pool = ref()
    if pool is not None:
        pool.close()


def _group_key(request: RewardRequest) -> tuple[str, str]:
    # Requests of one ground truth go to one worker, one after the other: its caches hit.
    model = request.reward_model
    if not hasattr(model, "get"):
        return ("", "")
    verifier, truth = model.get("verifier"), model.get("ground_truth")
    return (verifier if isinstance(verifier, str) else "", truth if isinstance(truth, str) else "")


class RewardPool:
    """Worker processes scoring :class:`RewardRequest` batches with a per-sample time limit.

    ``workers``: processes (default: CPU count). ``timeout_s``: time limit of one sample.
    ``memory_limit_mb``: address space a worker may add after start-up (None: no cap).
    ``max_chunk``: most samples sent to a worker at once. ``imports``: modules each worker imports
    at start, e.g. the ones that register custom verifiers (a verifier registered only in the
    calling process is unknown to the workers).

    >>> model = {"verifier": "mathverify", "ground_truth": "\\\\boxed{2}"}
    >>> with RewardPool(workers=1, timeout_s=30) as pool:  # doctest: +SKIP
    ...     [r.rewards["accuracy_reward"] for r in pool.score([RewardRequest("\\\\boxed{2}", model)])]
    [1.0]
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = 10.0,
        *,
        memory_limit_mb: int | None = 2048,
        max_chunk: int = 16,
        start_method: str | None = None,
        imports: Sequence[str] = (),
    ) -> None:
        workers = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if memory_limit_mb is not None and (not isinstance(memory_limit_mb, int) or memory_limit_mb < 64):
            raise ValueError(f"memory_limit_mb must be an int >= 64 or None, got {memory_limit_mb!r}")
        if not isinstance(max_chunk, int) or max_chunk < 1:
            raise ValueError(f"max_chunk must be an int >= 1, got {max_chunk!r}")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = memory_limit_mb
        self.max_chunk = max_chunk
        self.imports = tuple(imports)
        self.timeouts = 0  # samples killed for running past timeout_s
        self.crashes = 0  # samples whose worker died
        self.restarts = 0  # workers started to replace one
        self._ctx = _context(start_method)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._pending: deque[_Task] = deque()
        self._closing = False
        self._broken: str | None = None
        self._start_failures = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._workers: list[_Worker] = [self._start_worker() for _ in range(workers)]
        self._thread = threading.Thread(target=self._run, name="reward-pool", daemon=True)
        self._thread.start()
        # The workers ignore SIGTERM, and at exit multiprocessing terminates (SIGTERM) then
        # joins every child: a pool still open would hang the exit. An atexit handler is not
        # enough: multiprocessing re-registers its own last whenever its logger is first asked
        # for, and it then runs first. Its finalizers of priority >= 0 run before it joins.
        self._exit_finalizer = Finalize(
            self, _close_pool, args=(weakref.ref(self),), exitpriority=_EXIT_PRIORITY
        )

    # -- public -------------------------------------------------------------------------
    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]:
        """Results of ``items``, in order. Never raises for a bad sample: it scores 0 with an error."""
        items = list(items)
        for item in items:
            if not isinstance(item, RewardRequest):
                raise TypeError(f"RewardPool.score takes RewardRequest items, got {type(item).__name__}")
        if not items:
            return []
        batch = _Batch(len(items))
        order = sorted(range(len(items)), key=lambda i: _group_key(items[i]))
        tasks = [_Task(next(self._ids), i, items[i], batch) for i in order]
        with self._lock:
            if self._broken:
                raise RuntimeError(f"the reward pool is broken: {self._broken}")
            if self._closing:
                raise RuntimeError("the reward pool is closed")
            self._pending.extend(tasks)
        self._wake()
        while not batch.done.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError(f"the reward pool stopped: {self._broken or 'closed'}")
        return list(batch.results)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the workers; samples still waiting score 0 with an error."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._exit_finalizer.cancel()
        self._wake()
        self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring and tests)."""
        return [w.process.pid for w in self._workers]

    # -- dispatcher thread ----------------------------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake, or closing

    def _start_worker(self) -> _Worker:
        from trainer.rewards._worker import worker_main

        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child, self.memory_limit_mb, self.imports),
            name="reward-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        break
                self._assign()
                self._wait_and_handle()
        except BaseException as exc:  # the dispatcher must never leave callers waiting
            self._broken = f"{type(exc).__name__}: {exc}"
        finally:
            self._shutdown()

    def _assign(self) -> None:
        for worker in self._workers:
            while worker.ready and not worker.busy:
                with self._lock:
                    if not self._pending:
                        return
                    size = max(1, min(self.max_chunk, math.ceil(len(self._pending) / (2 * self.workers))))
                    chunk = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
                data = self._pickle(chunk)
                if data is None:
                    continue  # the unpicklable requests are answered; the rest went back to the queue
                worker.chunk, worker.done, worker.progress = chunk, 0, time.monotonic()
                try:
                    worker.conn.send_bytes(data)
                except OSError:  # the worker died meanwhile: its chunk goes back to the queue
                    with self._lock:
                        self._pending.extendleft(reversed(chunk))
                    worker.chunk, worker.done = [], 0
                    self._replace(worker, "error: reward worker died")
                    break

    def _pickle(self, chunk: list[_Task]) -> bytes | None:
        """The chunk as the worker reads it; a request that cannot be pickled scores 0 with an error."""
        try:
            return bytes(ForkingPickler.dumps([(task.id, task.request) for task in chunk]))
        except Exception:
            pass
        sendable = []
        for task in chunk:
            try:
                ForkingPickler.dumps(task.request)
            except Exception as exc:
                self._finish(
                    task,
                    zero_result(task.request, f"error: request cannot be sent to a worker: {exc!r}"[:500]),
                )
            else:
                sendable.append(task)
        with self._lock:
            self._pending.extendleft(reversed(sendable))
        return None

    def _deadline(self) -> float | None:
        deadlines = [w.progress + self.timeout_s for w in self._workers if w.busy]
        deadlines += [w.started + START_TIMEOUT_S for w in self._workers if not w.ready]
        return min(deadlines) if deadlines else None

    def _wait_and_handle(self) -> None:
        deadline = self._deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        by_conn = {w.conn: w for w in self._workers}
        by_sentinel = {w.process.sentinel: w for w in self._workers}
        ready = wait([*by_conn, *by_sentinel, self._wake_r], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 65536)
        for obj in ready:
            worker = by_conn.get(obj)  # type: ignore[call-overload]
            if worker is not None and worker in self._workers:
                self._drain(worker)
        for obj in ready:
            worker = by_sentinel.get(obj)  # type: ignore[call-overload]
            if worker is not None and worker in self._workers:
                self._drain(worker)
                if worker in self._workers:
                    code = worker.process.exitcode
                    self._replace(worker, f"error: reward worker died (exit code {code})")
        self._enforce_deadlines()

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready = True
                    self._start_failures = 0
                    continue
                if not worker.busy:
                    continue  # nothing is expected from an idle worker
                task_id, rewards, error = message
                task = worker.chunk[worker.done]
                if task.id != task_id:
                    raise RuntimeError(f"reward worker answered task {task_id}, expected {task.id}")
                worker.done += 1
                worker.progress = time.monotonic()
                self._finish(task, RewardResult(rewards, error))
        except (EOFError, OSError):
            return  # the sentinel reports the exit

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.busy and now - worker.progress >= self.timeout_s:
                self.timeouts += 1
                self._replace(worker, TIMEOUT)
            elif not worker.ready and now - worker.started >= START_TIMEOUT_S:
                self._replace(worker, "error: reward worker did not start")

    def _replace(self, worker: _Worker, error: str) -> None:
        """Kill ``worker`` and start another in its place; its current task gets ``error``, the
        rest of its chunk is queued again."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        if not worker.ready:
            self._start_failures += 1
        index = self._workers.index(worker)
        if self._start_failures >= MAX_START_FAILURES:
            del self._workers[index]
        else:
            self._workers[index] = self._start_worker()  # in place before anyone hears of the failure
            self.restarts += 1
        if worker.busy:
            current = worker.chunk[worker.done]
            with self._lock:
                self._pending.extendleft(reversed(worker.chunk[worker.done + 1 :]))
            if error != TIMEOUT:
                self.crashes += 1
            self._finish(current, zero_result(current.request, error))
        if self._start_failures >= MAX_START_FAILURES:
            raise RuntimeError(f"reward workers keep failing to start ({error})")

    def _finish(self, task: _Task, result: RewardResult) -> None:
        batch = task.batch
        batch.results[task.index] = result
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.done.set()

    def _shutdown(self) -> None:
        reason = self._broken or "the reward pool was closed"
        with self._lock:
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
        for worker in self._workers:
            pending += worker.chunk[worker.done :]
            worker.chunk, worker.done = [], 0
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for task in pending:
            self._finish(task, zero_result(task.request, f"error: {reason}"))
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self._workers = []
