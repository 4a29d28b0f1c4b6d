"""RewardPool: same results as in-process, per-sample time limits, crashes, memory caps."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

from trainer.rewards import RewardPool, RewardRequest, count_errors, score_request

HELPERS = "tests.unit.trainer.rewards.pool_verifiers"
GT_BOX = "<answer>\n[{'bbox_2d': [10, 10, 100, 100], 'label': 'dog'}]\n</answer>"
MATH = {"verifier": "mathverify", "ground_truth": "\\boxed{\\frac{1}{2}}"}
DET = {"verifier": "detection", "ground_truth": GT_BOX}


@pytest.fixture(scope="module")
def pool():
    with RewardPool(workers=2, timeout_s=2.0, imports=[HELPERS]) as pool:
        yield pool


def _mixed_batch() -> list[RewardRequest]:
    return [
        RewardRequest("<think>\nx\n</think>\n<answer>\n\\boxed{0.5}\n</answer>", MATH, data_source="math"),
        RewardRequest("\\boxed{3}", MATH, data_source="math"),
        RewardRequest(
            "\n<answer>\n[{'bbox_2d': [10, 10, 100, 90], 'label': 'dog'}]\n</answer>",
            DET,
            step=5,
            total_steps=10,
            data_source="det",
        ),  # fmt: skip
        RewardRequest(
            "\n<answer>\n[{'bbox_2d': [1, 1, 9, 9], 'label': 'dog'}]\n</answer>", DET, iou_schedule="average"
        ),
        RewardRequest("(B)", {"verifier": "choice", "ground_truth": "B"}, data_source="choice"),
        RewardRequest("x", {"verifier": 5, "ground_truth": "1"}, data_source="bad"),
        RewardRequest("x", {"verifier": "mathverify"}, data_source="bad"),
        RewardRequest("x", DET, image_size=(0, 0), data_source="bad"),
    ] * 3


def test_same_results_as_in_process(pool):
    batch = _mixed_batch()
    assert pool.score(batch) == [score_request(request) for request in batch]


def test_errors_are_counted_per_source(pool):
    batch = _mixed_batch()
    counts = count_errors(batch, pool.score(batch))
    assert (counts["bad"].count, counts["bad"].errors, counts["bad"].timeouts) == (9, 9, 0)
    assert counts["math"].reward_errors == 0
    assert counts["bad"].messages["error: reward_model.verifier: verifier must be a string, got int"] == 3
    unknown = pool.score([RewardRequest("x", {"verifier": "nope", "ground_truth": "1"})])[0]
    # the workers know the verifiers their imports registered
    assert unknown.error == (
        "error: reward_model.verifier: unknown verifier 'nope'; known verifiers: choice, detection, exact, "
        "mathverify, number, test_crash, test_hog, test_pid, test_sleep"
    )


def test_a_slow_sample_times_out_without_blocking_the_batch(pool):
    before = pool.timeouts
    batch = [RewardRequest("\\boxed{0.5}", MATH)] * 5 + [
        RewardRequest("x", {"verifier": "test_sleep", "ground_truth": "60"})
    ]
    results = pool.score(batch + [RewardRequest("\\boxed{0.5}", MATH)] * 5)
    assert results[5].error == "timeout"
    assert results[5].rewards == {"accuracy_reward": 0.0, "format_reward": 0.0, "final_reward": 0.0}
    assert all(
        r.error is None and r.rewards["accuracy_reward"] == 1.0 for i, r in enumerate(results) if i != 5
    )
    assert pool.timeouts == before + 1
    assert len(pool.worker_pids()) == 2  # the killed worker was replaced


def test_a_crashing_worker_is_replaced(pool):
    pids = set(pool.worker_pids())
    batch = [RewardRequest("\\boxed{0.5}", MATH)] * 4 + [
        RewardRequest("x", {"verifier": "test_crash", "ground_truth": ""})
    ]
    results = pool.score(batch)
    assert results[4].error == "error: reward worker died (exit code 3)"
    assert all(r.rewards["accuracy_reward"] == 1.0 for r in results[:4])
    assert set(pool.worker_pids()) != pids
    assert pool.score([RewardRequest("\\boxed{0.5}", MATH)])[0].rewards["accuracy_reward"] == 1.0


@pytest.mark.parametrize(
    "response",
    [
        "\\boxed{9^{9^{9^{9}}}}",
        "\\boxed{" + "\\frac{1}{" * 10_000 + "2" + "}" * 10_001,
    ],
)
def test_hostile_latex_is_stopped(pool, response):
    results = pool.score([RewardRequest(response, MATH), RewardRequest("\\boxed{0.5}", MATH)])
    assert results[0].rewards["accuracy_reward"] == 0.0
    assert results[0].error is None or results[0].error == "timeout" or results[0].error.startswith("error: ")
    assert results[1].rewards["accuracy_reward"] == 1.0


def test_concurrent_callers(pool):
    batches = {n: [RewardRequest("x", {"verifier": "test_pid", "ground_truth": ""})] * 3 + [
        RewardRequest(f"\\boxed{{{n}}}", {"verifier": "mathverify", "ground_truth": f"\\boxed{{{n}}}"})
    ] for n in range(6)}  # fmt: skip
    out: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda n=n: out.__setitem__(n, pool.score(batches[n]))) for n in batches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in batches:
        assert out[n][3].rewards["accuracy_reward"] == 1.0
        assert {int(r.rewards["pid_reward"]) for r in out[n][:3]} <= set(pool.worker_pids())


class _Unpicklable(dict):
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def test_an_unpicklable_request_scores_zero(pool):
    results = pool.score([RewardRequest("x", _Unpicklable(MATH)), RewardRequest("\\boxed{0.5}", MATH)])
    assert results[0].error.startswith("error: request cannot be sent to a worker")
    assert results[1].rewards["accuracy_reward"] == 1.0
    with pytest.raises(TypeError):
        pickle.dumps(_Unpicklable())


def test_memory_is_capped():
    with RewardPool(workers=1, timeout_s=20, memory_limit_mb=256, imports=[HELPERS]) as small:
        results = small.score([
            RewardRequest("x", {"verifier": "test_hog", "ground_truth": "4096"}),
            RewardRequest("x", {"verifier": "test_hog", "ground_truth": "16"}),
        ])  # fmt: skip
    assert results[0].error == "error: out of memory"
    assert results[1].rewards["accuracy_reward"] == 1.0


def test_arguments_and_closed_pool():
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        RewardPool(workers=0)
    with pytest.raises(ValueError, match="timeout_s must be a positive number, got -1"):
        RewardPool(workers=1, timeout_s=-1)
    pool = RewardPool(workers=1, timeout_s=5)
    assert pool.score([]) == []
    # one worker, an unpicklable request first: the next one is still sent
    results = pool.score([RewardRequest("x", _Unpicklable(MATH)), RewardRequest("\\boxed{0.5}", MATH)])
    assert [r.rewards["accuracy_reward"] for r in results] == [0.0, 1.0]
    with pytest.raises(TypeError, match="RewardPool.score takes RewardRequest items, got dict"):
        pool.score([{"response": "x"}])
    pool.close()
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="the reward pool is closed"):
        pool.score([RewardRequest("x", MATH)])


def test_a_pool_left_open_does_not_hang_the_interpreter_exit():
    """The workers ignore SIGTERM; multiprocessing's exit handler, moved last by its logger,
    would otherwise wait for them forever (a process that never ends)."""
    code = textwrap.dedent(
        """
        import multiprocessing
        from trainer.rewards import RewardPool, RewardRequest
        pool = RewardPool(workers=1, timeout_s=5)
        request = RewardRequest("\\\\boxed{2}", {"verifier": "mathverify", "ground_truth": "\\\\boxed{2}"})
        print(pool.score([request])[0].rewards["accuracy_reward"], flush=True)
        multiprocessing.get_logger()  # re-registers multiprocessing's exit handler after the pool's start
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"
