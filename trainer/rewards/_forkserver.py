"""Preloaded by the reward pool's forkserver, and imported nowhere else: it ignores SIGTERM.

Ray's ``stop_job`` sends SIGTERM to every process of a job, the forkserver and the reward
workers included, while the trainer finishes the step under way (:mod:`trainer.engine.stop`).
The pool learns of a worker's exit through the forkserver, so a forkserver ended by the signal
looks like every worker dying at once: the step's samples would score 0 with "reward worker
died". Ignoring SIGTERM here (and in the workers, which inherit it) leaves the shutdown to the
trainer: it closes the pool (``None`` to each worker, then SIGKILL), and the forkserver exits
when its last client does.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
