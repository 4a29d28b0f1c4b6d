"""Micro-batch layouts against batch order: grouped by length (``algo.group_by_length``) and packed
without padding (``algo.remove_padding``, attended through a mask or sequence by sequence), padding
and time.

Usage: python bench/bench_micro_batches.py [--responses 128] [--micro 8] [--rounds 3] [--seed 0]
       [--size tiny|small]

A V-Triune batch mixes short perception answers with long reasoning ones. This bench builds
``--responses`` rollouts of the tiny model over two image prompts, with response lengths drawn
from such a mix (a third 20-60 tokens, a third 60-200, a third 200-480, in random order, as
sampling leaves them), and runs the same ``update_policy`` (log-prob recompute, one AdamW step,
micro-batches of ``--micro``) in each layout, rotating which goes first, ``--rounds`` times. It
prints the pad tokens of each layout (counted as collate pads them; none when packed), the median
time of each and its ratio to batch order (lower is faster), measured in the same run, and the
tokens of its largest forward pass (what bounds activation memory). The last layout bounds each
pass by tokens (``algo.micro_batch_tokens``: ``--micro`` sequences of mean length) instead of
by count.
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
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    args = parser.parse_args()

    import torch

    from bench.bench_ray_engine import random_rollouts
    from trainer.algo import UpdateConfig, update_policy
    from trainer.algo.update import micro_batches, padded_tokens
    from trainer.models import build_tiny_model, freeze, param_groups
    from trainer.models.attention import SDPA_VARLEN, register

    register()

    torch.set_num_threads(args.threads)
    model, processor = build_tiny_model("qwen2_vl", size=args.size, seed=0)
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
    everything = range(len(rollouts))
    grouped_pads = padded_tokens(
        micro_batches(everything, args.micro, (prompt_lengths, lengths)), prompt_lengths, lengths
    )
    layouts = {  # name: (UpdateConfig options, the language model's attention, pad tokens)
        "in order": (
            {},
            "sdpa",
            padded_tokens(micro_batches(everything, args.micro), prompt_lengths, lengths),
        ),
        "grouped": ({"group_by_length": True}, "sdpa", grouped_pads),
        "packed, mask": ({"remove_padding": True}, "sdpa", 0),
        "packed, varlen": ({"remove_padding": True}, SDPA_VARLEN, 0),
        "grouped+packed": ({"group_by_length": True, "remove_padding": True}, SDPA_VARLEN, 0),
        # as many tokens a pass as --micro sequences of mean length, up to 4x --micro sequences
        "token budget": (
            {
                "group_by_length": True,
                "remove_padding": True,
                "micro_batch_tokens": args.micro * real // len(rollouts),
                "micro_batch_size": 4 * args.micro,
            },
            SDPA_VARLEN,
            0,
        ),
    }
    largest: dict[str, int] = dict.fromkeys(layouts, 0)  # tokens of the largest forward pass

    def timed(name: str) -> float:
        options, attention, _ = layouts[name]
        clone = copy.deepcopy(model)
        clone.set_attn_implementation({"text_config": attention})
        optimizer = torch.optim.AdamW(param_groups(clone, {"llm": 1e-4}))
        config = UpdateConfig(**({"micro_batch_size": args.micro} | options))

        def record(module: object, inputs: tuple, output: object) -> None:
            rows, width = inputs[0].shape
            largest[name] = max(largest[name], rows * width)

        hook = clone.get_input_embeddings().register_forward_hook(record)
        start = time.perf_counter()
        update_policy(clone, optimizer, rollouts, advantages, pad_token_id=0, config=config)
        elapsed = time.perf_counter() - start
        hook.remove()
        return elapsed

    names = list(layouts)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            times[name].append(timed(name))

    print(
        f"{args.size} model, {len(rollouts)} responses ({min(lengths)}-{max(lengths)} tokens, {real} real "
        f"tokens with prompts), micro-batches of {args.micro}, {args.rounds} rounds, {args.threads} thread(s)"
    )
    header = f"{'micro-batches':<15} {'pad tokens':>11} {'pad share':>10} {'median update':>14}"
    print(f"{header} {'/ in order':>11} {'largest pass':>13}")
    baseline = statistics.median(times["in order"])
    for name in names:
        pads = layouts[name][2]
        median = statistics.median(times[name])
        share = pads / (pads + real)
        row = f"{name:<15} {pads:>11,} {share:>10.1%} {median:>13.2f}s {median / baseline:>10.2f}x"
        print(f"{row} {largest[name]:>13,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
