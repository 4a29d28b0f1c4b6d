"""Remote reward service vs in-process pool: throughput and the overhead per sample.

Scores the same mixed batch (math and detection responses) with a :class:`RewardPool` in this
process, then with ``python -m trainer.rewards.service`` (same number of workers) through a
:class:`RewardClient`, checks that the results are identical, and prints both throughputs, the
HTTP overhead per sample and the round trip of a one-sample request.

    python bench/bench_rewards_service.py [--samples 4096] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import subprocess
import sys
import time

from trainer.rewards import RewardClient, RewardPool, RewardRequest

GT = (
    "<answer>\n[{'bbox_2d': [100, 120, 300, 400], 'label': 'dog'}, "
    "{'bbox_2d': [500, 500, 700, 650], 'label': 'cat'}]\n</answer>"
)


def make_requests(count: int, seed: int) -> list[RewardRequest]:
    rng = random.Random(seed)
    det = {"verifier": "detection", "ground_truth": GT}
    requests = []
    for n in range(count):
        if n % 2:
            gold = rng.randint(1, 60)
            model = {"verifier": "mathverify", "ground_truth": f"\\boxed{{{gold}}}"}
            answer = gold if rng.random() < 0.6 else gold + 1
            text = "<think>\nAdding the two parts and checking again.\n</think>\n"
            requests.append(
                RewardRequest(f"{text}<answer>\n\\boxed{{{answer}}}\n</answer>", model, data_source="math")
            )
        else:
            dx = rng.randint(-20, 20)
            second = rng.choice(["cat", "dog"])
            boxes = [
                {"bbox_2d": [100 + dx, 120, 300 + dx, 400], "label": "dog"},
                {"bbox_2d": [500, 500 + dx, 700, 650 + dx], "label": second},
            ]
            text = f"<think>\nTwo animals.\n</think>\n<answer>\n{boxes}\n</answer>"
            requests.append(RewardRequest(text, det, step=n % 100, total_steps=100, data_source="det"))
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="items per HTTP request")
    args = parser.parse_args()
    requests = make_requests(args.samples, 0)

    with RewardPool(args.workers, timeout_s=10.0) as pool:
        pool.score(requests[:4])  # warm
        start = time.perf_counter()
        local = pool.score(requests)
        t_local = time.perf_counter() - start

    token = secrets.token_hex(16)
    command = [sys.executable, "-m", "trainer.rewards.service", "--port", "0", "--token", token,
               "--workers", str(args.workers)]  # fmt: skip
    service = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        address = service.stdout.readline().split()[4]
        with RewardClient(address, token, batch_size=args.batch_size) as client:
            client.score(requests[:4])  # warm
            start = time.perf_counter()
            remote = client.score(requests)
            t_remote = time.perf_counter() - start
            trips = []
            for request in requests[:50]:
                start = time.perf_counter()
                client.score([request])
                trips.append(time.perf_counter() - start)
    finally:
        service.terminate()
        service.wait(timeout=60)
    with RewardPool(args.workers, timeout_s=10.0) as pool:
        pool.score(requests[:4])  # warm
        singles = []
        for request in requests[:50]:
            start = time.perf_counter()
            pool.score([request])
            singles.append(time.perf_counter() - start)

    identical = sum(a == b for a, b in zip(local, remote, strict=True))
    n = len(requests)
    print(f"samples: {n} (half math, half detection), {args.workers} workers, {args.batch_size} per request")
    print(f"identical results: {identical}/{n}")
    print(f"in-process RewardPool: {n / t_local:8.0f} samples/s  ({t_local / n * 1e6:7.1f} us/sample)")
    print(f"remote service:        {n / t_remote:8.0f} samples/s  ({t_remote / n * 1e6:7.1f} us/sample)")
    overhead = (t_remote - t_local) / n * 1e6
    print(f"overhead of the service: {overhead:.1f} us/sample ({t_local / t_remote:.2f}x the throughput)")
    print(
        f"one-sample round trip: {sorted(trips)[len(trips) // 2] * 1e3:.2f} ms median remote, "
        f"{sorted(singles)[len(singles) // 2] * 1e3:.2f} ms in-process"
    )


if __name__ == "__main__":
    main()
