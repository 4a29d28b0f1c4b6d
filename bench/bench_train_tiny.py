"""Training steps of the ``tiny-cpu-demo`` preset on CPU: time per phase, tokens/s, memory, model size.

Usage: python bench/bench_train_tiny.py [--steps 5] [--threads 1] [--data DIR] [--set key=value ...]

Runs the engine (``open_session`` + ``run_loop``, evaluation off) on synthetic data (made in a
temporary directory unless ``--data`` names one), then the same number of bare steps on the
prompts of the last engine step: ``backend.generate`` + random rewards + ``update_policy``,
without data loading, prompt building, reward scoring or metrics. Timings are medians over
the steps after the first (warm-up). The ratio column is engine / bare: what the step's
plumbing (images, prompts, reward workers, monitor) costs on top of generation and update.
On a machine shared with other jobs, one thread is the stable setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _engine_steps(args: argparse.Namespace, data: str, out: str):
    from trainer.config import build_run_spec, load_config
    from trainer.engine import open_session, run_loop

    overrides = [f"data.root={data}", "eval.before_training=false", "eval.every=0", "tracking.console=false"]
    overrides += [f"total_steps={args.steps + 1}", *args.overrides]
    config = load_config("tiny-cpu-demo", overrides)
    spec = build_run_spec(config, run_id="bench")
    started = time.perf_counter()
    session = open_session(config, list(spec.sources), output_dir=out)
    setup_s = time.perf_counter() - started
    with session:
        run_loop(session)
        rows: dict[str, list[float]] = {}
        for line in (Path(out) / "metrics.jsonl").read_text().splitlines():
            point = json.loads(line)
            if point.get("source") is None and "key" in point and point["step"] > 1:  # step 1: warm-up
                rows.setdefault(point["key"], []).append(point["value"])
        bare = _bare_steps(session, args.steps)
    return config, session, setup_s, rows, bare


def _bare_steps(session, steps: int) -> dict[str, list[float]]:
    import dataclasses

    import torch

    from trainer.algo import group_advantages, update_policy
    from trainer.engine.step import draw_items

    state, rt = session.state, session.runtime
    config = rt.config
    items, _ = draw_items(state, rt, config.rollout.prompts_per_step)
    prompts = [item.prompt for item in items]
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"rollout": [], "update": [], "tokens": []}
    for step in range(steps + 1):
        t0 = time.perf_counter()
        rollouts = rt.backend.generate(
            prompts,
            n=config.rollout.n,
            max_new_tokens=config.rollout.max_response_length,
            temperature=config.rollout.temperature,
            seed=step,
        )
        t1 = time.perf_counter()
        rewards = torch.rand(len(rollouts), generator=generator).round()
        advantages = group_advantages(rewards, group_ids=[r.prompt_index for r in rollouts])
        update_policy(
            state.policy.model,
            state.policy.optimizer,
            rollouts,
            advantages,
            pad_token_id=rt.pad_token_id,
            config=dataclasses.replace(rt.update, seed=step),
        )
        t2 = time.perf_counter()
        if step == 0:
            continue
        times["rollout"].append(t1 - t0)
        times["update"].append(t2 - t1)
        times["tokens"].append(sum(r.prompt.length + r.response_length for r in rollouts))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", help="synthetic data directory (default: generated in a temp dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    started = time.perf_counter()
    import torch

    from trainer.data.synth import generate_dataset
    from trainer.models import count_parameters

    import_s = time.perf_counter() - started
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = f"{tmp}/synth"
            generate_dataset(data, per_source=40, image_size=112)
        config, session, setup_s, rows, bare = _engine_steps(args, data, f"{tmp}/out")
    median = {key: statistics.median(values) for key, values in rows.items()}
    bare_median = {key: statistics.median(values) for key, values in bare.items()}
    params = count_parameters(session.state.policy.model)
    trainable = sum(p.numel() for p in session.state.policy.model.parameters() if p.requires_grad)
    rollout = config.rollout

    model = config.model
    print(
        f"model            {model.path}: {params / 1e6:.2f} M parameters ({trainable / 1e6:.2f} M trained),"
    )
    print(f"                 {params * 4 / 2**20:.1f} MiB in float32")
    print(
        f"workload         {rollout.prompts_per_step} prompts x {rollout.n} responses x <= "
        f"{rollout.max_response_length} tokens, image area {model.min_pixels}..{model.max_pixels} px,"
    )
    workers = config.reward.workers
    print(
        f"                 {args.threads} torch thread(s), {workers} reward worker(s), median of {args.steps}"
    )
    print(f"import           {import_s:6.2f} s (torch + transformers)")
    print(f"setup            {setup_s:6.2f} s (data, model, pre-flight checks, reward workers)")
    print(f"{'':16} {'engine':>8} {'bare':>8} {'ratio':>7}")

    def row(name: str, ours: float, ref: float | None = None) -> None:
        ratio = f"{ours / ref:6.2f}x" if ref else ""
        ref_text = f"{ref:7.3f}s" if ref is not None else ""
        print(f"{name:16} {ours:7.3f}s {ref_text:>8} {ratio:>7}")

    row("step", median["perf/step_time"], bare_median["rollout"] + bare_median["update"])
    row("  rollout", median["perf/rollout_time"], bare_median["rollout"])
    row("  reward", median["perf/reward_time"])
    row("  update", median["perf/update_time"], bare_median["update"])
    other = median["perf/step_time"] - median["perf/rollout_time"] - median["perf/reward_time"]
    row("  rest", other - median["perf/update_time"])
    print("  (rest = drawing rows, prompt pool, image resizing, advantages)")
    bare_rate = bare_median["tokens"] / (bare_median["rollout"] + bare_median["update"])
    rate = median["perf/tokens_per_s"]
    print(f"tokens/s         {rate:7.0f}  {bare_rate:7.0f} {rate / bare_rate:6.2f}x")
    print("  (prompt + response tokens of a step / step time)")
    print(f"peak memory      {median['perf/peak_memory'] * 1024:7.0f} MiB (process peak RSS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
