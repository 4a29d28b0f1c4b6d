"""One GRPO step of the tiny model on CPU: rollout, log-prob recompute, update.

Usage: python bench/bench_step_tiny.py [--prompts 1] [--n 8] [--max-new-tokens 32]
       [--threads 1] [--steps 3] [--arch qwen2_vl] [--size tiny] [--image 224]

Each step samples n responses for each of the prompts (one image each) with the
``hf`` backend, draws random rewards, computes GRPO advantages and runs
``update_policy`` (old log-probs recomputed by the policy, one on-policy AdamW
step, vision tower and connector frozen). The log-prob recompute is also timed
on its own. Timings are medians over ``--steps`` steps after one warm-up step.

The reference column is the figure measured by hand on this kind of machine
(2 threads, one 224-px image, 1 prompt x 8 x 32 tokens, the tiny 0.6 M model):
generation ~0.15-0.2 s, forward + backward + AdamW ~0.1-0.15 s (midpoints used).
Ratios (ours / reference, lower is faster) are printed for that workload whatever
``--threads``; on a machine shared with other jobs, one thread is the stable
setting (two threads competing with other processes slow torch down sharply).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

REFERENCE_ROLLOUT_S = 0.175
REFERENCE_UPDATE_S = 0.125


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--arch", choices=["qwen2_vl", "qwen2_5_vl"], default="qwen2_vl")
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--image", type=int, default=224, help="square image side in pixels")
    args = parser.parse_args()

    started = time.perf_counter()
    import torch
    from PIL import Image

    from trainer.algo import UpdateConfig, group_advantages, recompute_logprobs, update_policy
    from trainer.models import build_tiny_model, count_parameters, freeze, param_groups
    from trainer.rollout import RolloutPrompt, build_backend

    import_s = time.perf_counter() - started
    torch.set_num_threads(args.threads)
    model, processor = build_tiny_model(args.arch, args.size, seed=0)
    freeze(model, ["vit", "connector"])
    optimizer = torch.optim.AdamW(param_groups(model, {"llm": 1e-5}))
    backend = build_backend("hf", model=model, processor=processor)
    prompts = [
        RolloutPrompt(
            [
                {
                    "role": "user",
                    "content": f"<image>Question {i}: what is shown? Put the answer in \\boxed{{}}.",
                }
            ],
            [Image.new("RGB", (args.image, args.image), (40 * i % 255, 90, 160))],
        )
        for i in range(args.prompts)
    ]
    config = UpdateConfig(micro_batch_size=args.n * args.prompts)
    rewards_rng = torch.Generator().manual_seed(0)

    rows: dict[str, list[float]] = {
        "rollout": [],
        "recompute": [],
        "update": [],
        "gen_tokens": [],
        "all_tokens": [],
    }
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        rollouts = backend.generate(prompts, n=args.n, max_new_tokens=args.max_new_tokens, seed=step)
        t1 = time.perf_counter()
        recompute_logprobs(model, rollouts, pad_token_id=backend.pad_token_id, micro_batch_size=len(rollouts))
        t2 = time.perf_counter()
        rewards = torch.rand(len(rollouts), generator=rewards_rng).round()
        advantages = group_advantages(rewards, group_ids=[r.prompt_index for r in rollouts])
        t3 = time.perf_counter()
        update_policy(
            model, optimizer, rollouts, advantages, pad_token_id=backend.pad_token_id, config=config
        )
        t4 = time.perf_counter()
        if step == 0:
            continue  # warm-up
        rows["rollout"].append(t1 - t0)
        rows["recompute"].append(t2 - t1)
        rows["update"].append(t4 - t3)
        rows["gen_tokens"].append(sum(r.response_length for r in rollouts))
        rows["all_tokens"].append(sum(r.response_length + r.prompt.length for r in rollouts))

    median = {key: statistics.median(values) for key, values in rows.items()}
    params = count_parameters(model)
    reference = (args.prompts, args.n, args.max_new_tokens, args.size, args.image) == (1, 8, 32, "tiny", 224)

    def row(name: str, ours: float, ref: float | None = None) -> None:
        shown = ref is not None and reference
        ref_text = f"{ref:9.3f}s" if shown else ""
        ratio = f"{ours / ref:6.2f}x" if shown else ""
        print(f"{name:16} {ours:7.3f}s {ref_text:>10} {ratio:>7}")

    size_mib = params * 4 / 2**20
    print(
        f"model            {args.arch} {args.size}: {params / 1e6:.2f} M parameters, {size_mib:.1f} MiB fp32"
    )
    print(
        f"setup            {args.prompts} prompt(s) x {args.n} samples x {args.max_new_tokens} new tokens, ",
        end="",
    )
    print(f"{args.image}px image, {args.threads} thread(s), median of {args.steps} step(s)")
    print(f"import           {import_s:6.2f} s (torch + transformers)")
    print(f"{'':16} {'ours':>8} {'reference':>10} {'ratio':>7}   (reference: 2 threads, hand-measured)")
    row("rollout", median["rollout"], REFERENCE_ROLLOUT_S)
    row("logp recompute", median["recompute"])
    row("update", median["update"], REFERENCE_UPDATE_S)
    print("  (update = old log-prob recompute + forward/backward + AdamW)")
    row("step", median["rollout"] + median["update"], REFERENCE_ROLLOUT_S + REFERENCE_UPDATE_S)
    gen_rate = median["gen_tokens"] / median["rollout"]
    print(f"generated tokens {median['gen_tokens']:.0f} per step, {gen_rate:.0f} tokens/s")
    update_rate = median["all_tokens"] / median["update"]
    print(
        f"update tokens    {median['all_tokens']:.0f} per step (prompt + response), {update_rate:.0f} tok/s"
    )
    print(f"peak RSS         {_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
