"""One GRPO training step of the same tiny Qwen2-VL on the same batch: ours against TRL's GRPOTrainer.

Usage: python bench/bench_step_vs_trl.py [--prompts 2] [--n 8] [--max-new-tokens 32] [--steps 5]
       [--threads 1] [--image 112] [--lr 1e-5]

Both sides start from the same random-init tiny model (``tiny:qwen2_vl:tiny``, same seed,
same weights), take the same synthetic math prompts with one image each, sample ``n``
responses per prompt at temperature 1 with at most ``--max-new-tokens`` tokens, score them
with the same in-process reward function (``trainer.rewards.compute_reward``: math-verify
accuracy + the four-tag format reward), and take one AdamW step (lr ``--lr``, no KL, one
on-policy update per batch). Timings are medians over ``--steps`` steps after one warm-up
step, in one process, one side after the other.

Breakdown:

- ours: ``rollout`` (HF generate through our backend, with prompt encoding), ``reward``,
  ``update`` (GRPO advantages, old log-probs recomputed by the policy, loss, backward, clip,
  AdamW, LR schedule);
- TRL: ``rollout`` (``GRPOTrainer._generate_single_turn``), ``reward``
  (``_calculate_rewards``) and ``update`` = the rest of the optimizer step as TRL's
  callbacks see it (tokenisation, advantages, forward, backward, AdamW). With
  ``num_iterations=1`` and ``beta=0`` TRL does not recompute old log-probs (it takes the
  detached current ones), so our update does one more forward pass than TRL's.

The response lengths differ (each side samples its own tokens): their means are printed
next to the times, and ``tokens/s`` normalises for them. Exits 0 with a message when ``trl``
is not installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _rows(count: int, image_size: int) -> list[dict[str, Any]]:
    from trainer.data.synth import generate_sample

    return [generate_sample("math", index, image_size=image_size).row for index in range(count)]


def _score(response: str, ground_truth: str) -> float:
    from trainer.rewards import compute_reward

    reward_model = {"verifier": "mathverify", "ground_truth": ground_truth, "format_ratio": 0.1}
    return float(compute_reward(response, reward_model)["final_reward"])


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_ours(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Our step, stage by stage, as ``trainer.engine.step.train_step`` runs it."""
    import torch

    from trainer.algo import UpdateConfig, group_advantages, update_policy, warmup_constant_schedule
    from trainer.engine.prompts import prepare_item
    from trainer.engine.state import step_seed
    from trainer.models import build_tiny_model, freeze, param_groups
    from trainer.rollout import build_backend

    model, processor = build_tiny_model("qwen2_vl", "tiny", seed=0)
    freeze(model, [])  # TRL trains every parameter; so do we here
    optimizer = torch.optim.AdamW(param_groups(model, {"vit": args.lr, "connector": args.lr, "llm": args.lr}))
    scheduler = warmup_constant_schedule(optimizer, total_steps=args.steps + 1, warmup_ratio=0.0)
    backend = build_backend("hf", model=model, processor=processor)
    pad = processor.tokenizer.pad_token_id
    config = UpdateConfig(micro_batch_size=len(rows) * args.n, temperature=1.0)
    times: dict[str, list[float]] = {"rollout": [], "reward": [], "update": [], "step": [], "length": []}
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        items = [
            prepare_item("synth_math", row, key=i, pool=None, min_pixels=3136, max_pixels=12544)
            for i, row in enumerate(rows)
        ]
        rollouts = backend.generate(
            [item.prompt for item in items],
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            temperature=1.0,
            seed=step_seed(0, step),
        )
        t1 = time.perf_counter()
        rewards = [
            _score(r.response_text, rows[r.prompt_index]["reward_model"]["ground_truth"]) for r in rollouts
        ]
        t2 = time.perf_counter()
        advantages = group_advantages(torch.tensor(rewards), group_ids=[r.prompt_index for r in rollouts])
        update_policy(model, optimizer, rollouts, advantages, pad_token_id=pad, config=config)
        scheduler.step()
        t3 = time.perf_counter()
        if step == 0:
            continue
        times["rollout"].append(t1 - t0)
        times["reward"].append(t2 - t1)
        times["update"].append(t3 - t2)
        times["step"].append(t3 - t0)
        times["length"].append(sum(r.response_length for r in rollouts) / len(rollouts))
    return times


def _timed(owner: Any, name: str, into: list[float]) -> None:
    """Wrap ``owner.name`` so that each call's duration is appended to ``into``."""
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            into.append(time.perf_counter() - start)

    setattr(owner, name, wrapper)


def bench_trl(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """TRL's GRPOTrainer on the same model, prompts and reward; stage times from wrapped methods."""
    from datasets import Dataset
    from PIL import Image
    from transformers import PrinterCallback, Trainer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trainer.data.images import prepare_image
    from trainer.models import build_tiny_model
    from trainer.rollout.prompts import IMAGE_MARKER

    model, processor = build_tiny_model("qwen2_vl", "tiny", seed=0)
    processor.image_processor.min_pixels = 3136
    processor.image_processor.max_pixels = 12544
    records = []
    for row in rows:
        image = prepare_image(row["images"][0]["bytes"], min_pixels=3136, max_pixels=12544).image
        assert isinstance(image, Image.Image)
        text = row["prompt"][0]["content"].replace(IMAGE_MARKER, "")
        truth = row["reward_model"]["ground_truth"]
        records.append({"prompt": [{"role": "user", "content": text}], "image": image, "truth": truth})
    dataset = Dataset.from_list(records * (args.steps + 1))

    lengths: list[float] = []

    def reward(completions: list[Any], truth: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [_score(text, gt) for text, gt in zip(texts, truth, strict=True)]

    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            step_times.append(time.perf_counter() - self.start)

    batch = len(rows) * args.n
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"),
        per_device_train_batch_size=batch,
        num_generations=args.n,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        max_steps=args.steps + 1,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        beta=0.0,
        num_iterations=1,
        save_strategy="no",
        dataloader_num_workers=0,
        shuffle_dataset=False,
        disable_tqdm=True,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=processor,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        callbacks=[StepTimer()],
    )
    trainer.remove_callback(PrinterCallback)  # its per-step log dicts would drown the table
    rollout: list[float] = []
    rewards: list[float] = []
    _timed(trainer, "_generate_single_turn", rollout)
    _timed(trainer, "_calculate_rewards", rewards)
    base_log = Trainer.log  # GRPOTrainer.log adds its metrics, then calls this one

    def log(self: Any, logs: dict[str, float], *a: Any, **k: Any) -> None:
        if "completions/mean_length" in logs:
            lengths.append(float(logs["completions/mean_length"]))
        base_log(self, logs, *a, **k)

    Trainer.log = log  # type: ignore[method-assign]
    try:
        trainer.train()
    finally:
        Trainer.log = base_log  # type: ignore[method-assign]
    steps = step_times[1:]
    return {
        "rollout": rollout[1:],
        "reward": rewards[1:],
        "update": [s - r - w for s, r, w in zip(steps, rollout[1:], rewards[1:], strict=False)],
        "step": steps,
        "length": lengths[1:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image", type=int, default=112, help="square image side in pixels")
    parser.add_argument("--lr", type=float, default=1e-5)
    args = parser.parse_args()
    try:
        import trl
    except ImportError:
        print("bench_step_vs_trl: skipped: trl is not installed (pip install trl==1.16.0)")
        return 0
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    rows = _rows(args.prompts, args.image)
    ours = bench_ours(args, rows)
    theirs = bench_trl(args, rows)
    print(
        f"one GRPO step, tiny Qwen2-VL (0.67 M), {args.prompts} prompt(s) x {args.n} responses x <= "
        f"{args.max_new_tokens} tokens, {args.image}-px image, {args.threads} thread(s); medians of "
        f"{args.steps} steps; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}"
    )
    print(f"{'stage':<10} {'ours (s)':>10} {'trl (s)':>10} {'ours/trl':>9}")
    for stage in ("rollout", "reward", "update", "step"):
        a, b = _median(ours[stage]), _median(theirs[stage])
        print(f"{stage:<10} {a:>10.3f} {b:>10.3f} {a / b:>9.2f}")
    la, lb = _median(ours["length"]), _median(theirs["length"])
    print(f"{'resp. len':<10} {la:>10.1f} {lb:>10.1f} {la / lb:>9.2f}")
    batch = args.prompts * args.n
    ta, tb = batch * la / _median(ours["step"]), batch * lb / _median(theirs["step"])
    print(f"{'resp tok/s':<10} {ta:>10.1f} {tb:>10.1f} {ta / tb:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
