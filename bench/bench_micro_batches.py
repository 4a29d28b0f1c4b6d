"""Micro-batches grouped by length (``algo.group_by_length``) against batch order: padding and time.

Usage: python bench/bench_micro_batches.py [--responses 128] [--micro 8] [--rounds 3] [--seed 0]

A V-Triune batch mixes short perception answers with long reasoning ones. This bench builds
``--responses`` rollouts of the tiny model over two image prompts, with response lengths drawn
from such a mix (a third 20-60 tokens, a third 60-200, a third 200-480, in random order, as
sampling leaves them), and runs the same ``update_policy`` (log-prob recompute, one AdamW step,
micro-batches of ``--micro``) both ways, alternating which goes first, ``--rounds`` times. It
prints the pad tokens each way (counted as collate pads them), the median time each way and
their ratio (grouped / in order: lower is faster), measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=128)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from bench.bench_ray_engine import random_rollouts
    from trainer.algo import UpdateConfig, update_policy
    from trainer.algo.update import micro_batches, padded_tokens
    from trainer.models import build_tiny_model, freeze, param_groups

    torch.set_num_threads(args.threads)
    model, processor = build_tiny_model("qwen2_vl", seed=0)
    freeze(model, ["vit", "connector"])
    rng = random.Random(args.seed)
    bands = [(20, 60), (60, 200), (200, 480)]
    lengths = [rng.randint(*bands[i % 3]) for i in range(args.responses)]
    rng.shuffle(lengths)
    generator = torch.Generator().manual_seed(args.seed)
    questions = (("How many dogs?", (112, 112)), ("Solve for x and box the answer.", (224, 224)))
    rollouts = random_rollouts(processor, lengths, generator, questions)
    advantages = torch.randn(len(rollouts), generator=generator)
    prompt_lengths = [r.prompt.length for r in rollouts]
    real = sum(prompt_lengths) + sum(lengths)
    pads = {
        "in order": padded_tokens(micro_batches(range(len(rollouts)), args.micro), prompt_lengths, lengths),
        "grouped": padded_tokens(
            micro_batches(range(len(rollouts)), args.micro, (prompt_lengths, lengths)),
            prompt_lengths,
            lengths,
        ),
    }

    def timed(grouped: bool) -> float:
        clone = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(param_groups(clone, {"llm": 1e-4}))
        config = UpdateConfig(micro_batch_size=args.micro, group_by_length=grouped)
        start = time.perf_counter()
        update_policy(clone, optimizer, rollouts, advantages, pad_token_id=0, config=config)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"in order": [], "grouped": []}
    for round_ in range(args.rounds):
        order = ["in order", "grouped"] if round_ % 2 == 0 else ["grouped", "in order"]
        for name in order:
            times[name].append(timed(name == "grouped"))

    print(
        f"{len(rollouts)} responses ({min(lengths)}-{max(lengths)} tokens, {real} real tokens with prompts), "
        f"micro-batches of {args.micro}, {args.rounds} rounds, {args.threads} thread(s)"
    )
    print(f"{'micro-batches':<14} {'pad tokens':>11} {'pad share':>10} {'median update':>14}")
    for name in ("in order", "grouped"):
        share = pads[name] / (pads[name] + real)
        print(f"{name:<14} {pads[name]:>11,} {share:>10.1%} {statistics.median(times[name]):>13.2f}s")
    ratio = statistics.median(times["grouped"]) / statistics.median(times["in order"])
    pad_ratio = pads["grouped"] / pads["in order"]
    print(f"time grouped / in order: {ratio:.2f}   pad tokens grouped / in order: {pad_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
