"""Math rewards of one V-Triune step (1024 prompts × 8 responses): RewardPool vs a plain loop.

The baseline is the plain sequential loop V-Triune's reward server runs per request:
``math_verify.parse`` of the ground truth, of the response, then ``math_verify.verify``. Ours is
:class:`trainer.rewards.RewardPool` (worker processes, ground truths parsed once, decisions
cached, the string fast path). The script checks that every decision is the same and prints
the time of each and the ratio (pool start-up shown apart: a trainer starts it once).

    python bench/bench_rewards_math.py [--prompts 1024] [--group 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import random
import time

import math_verify
from latex2sympy2_extended import NormalizationConfig

from trainer.rewards import RewardPool, RewardRequest

PRED_CONFIG = [
    math_verify.LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
        ),
        boxed_match_priority=0,
        try_extract_without_anchor=False,
    )
]
FILLER = (
    "We first rewrite the expression and collect like terms. Substituting the values gives the next "
    "line; checking the boundary cases shows nothing changes. Wait, let me re-check the arithmetic. "
)


def baseline_accuracy(response: str, solution: str) -> float:
    gold = math_verify.parse(solution.lower(), extraction_mode="first_match")
    if not gold:
        return 0.0
    pred = math_verify.parse(response.lower(), extraction_config=PRED_CONFIG, extraction_mode="first_match")
    return float(math_verify.verify(gold, pred))


def _answer(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A ground truth, some equivalent forms, some wrong answers."""
    kind = rng.randrange(6)
    a, b = rng.randint(1, 40), rng.randint(2, 12)
    if kind == 0:
        n = rng.randint(-500, 5000)
        return str(n), [str(n), f"{n}.0"], [str(n + 1), str(-n - 2)]
    if kind == 1:
        return (
            f"\\frac{{{a}}}{{{b}}}",
            [f"\\frac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}"],
            [f"\\frac{{{b}}}{{{a + 1}}}"],
        )
    if kind == 2:
        return f"{a}\\sqrt{{{b}}}", [f"\\sqrt{{{a * a * b}}}"], [f"{a + 1}\\sqrt{{{b}}}", f"\\sqrt{{{b}}}"]
    if kind == 3:
        return f"x^2+{a}x", [f"x^{{2}}+{a}x", f"{a}x+x^2"], [f"x^2-{a}x", f"x^2+{a + 1}x"]
    if kind == 4:
        return f"({a},{a + b})", [f"({a}, {a + b})"], [f"[{a},{a + b}]", f"({a},{a + b + 1})"]
    value = a / 8
    return f"{value:g}", [f"{value:g}", f"\\frac{{{a}}}{{8}}"], [f"{value + 0.5:g}"]


def make_requests(prompts: int, group: int, seed: int) -> list[RewardRequest]:
    rng = random.Random(seed)
    requests = []
    for p in range(prompts):
        gold, same, wrong = _answer(rng)
        model = {"verifier": "mathverify", "ground_truth": f"\\boxed{{{gold}}}", "format_ratio": 0.1}
        for _ in range(group):
            roll = rng.random()
            if roll < 0.45:
                final = gold
            elif roll < 0.65:
                final = rng.choice(same)
            elif roll < 0.92:
                final = rng.choice(wrong)
            else:
                final = None
            body = FILLER * rng.randint(1, 4)
            answer = f"The answer is \\boxed{{{final}}}." if final is not None else "I am not sure."
            response = f"<think>\n{body}\n</think>\n<answer>\n{answer}\n</answer>"
            requests.append(RewardRequest(response, model, data_source=f"source_{p % 4}"))
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    requests = make_requests(args.prompts, args.group, args.seed)

    baseline_accuracy("\\boxed{1}", "\\boxed{1}")  # import-time work out of the timing
    start = time.perf_counter()
    theirs = [baseline_accuracy(r.response, r.reward_model["ground_truth"]) for r in requests]
    t_base = time.perf_counter() - start

    start = time.perf_counter()
    with RewardPool(workers=args.workers, timeout_s=10.0) as pool:
        pool.score(requests[:2])  # the workers are up and warm
        t_start = time.perf_counter() - start
        start = time.perf_counter()
        results = pool.score(requests)
        t_ours = time.perf_counter() - start
    ours = [result.rewards["accuracy_reward"] for result in results]
    errors = sum(result.error is not None for result in results)

    same = sum(a == b for a, b in zip(theirs, ours, strict=True))
    print(f"responses: {len(requests)} ({args.prompts} prompts x {args.group}), correct: {int(sum(theirs))}")
    print(f"same decisions: {same}/{len(requests)}, errors/timeouts in the pool: {errors}")
    per = 1e3 / len(requests)
    print(f"plain sequential math_verify loop: {t_base:7.2f} s  ({t_base * per:.2f} ms/response)")
    print(
        f"RewardPool, {args.workers} workers, cached: {t_ours:7.2f} s  ({t_ours * per:.2f} ms/response)"
        f"  + {t_start:.2f} s pool start-up"
    )
    print(f"speed-up: {t_base / t_ours:.1f}x (with start-up: {t_base / (t_ours + t_start):.1f}x)")


if __name__ == "__main__":
    main()
