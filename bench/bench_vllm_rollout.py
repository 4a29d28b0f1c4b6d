"""Rollout throughput of the vLLM backend against vLLM's own ``generate`` on the same prompts.

Usage (in vLLM's environment, ``bash bench/vllm_env.sh`` makes it):
    .venv-vllm/bin/python bench/bench_vllm_rollout.py [--arch qwen2_vl] [--size small]
        [--prompts 16] [--n 8] [--max-new-tokens 64] [--image 112] [--rounds 5] [--out FILE]

One random-init model (``tiny:<arch>:<size>``), one engine, one batch of synthetic math
prompts with an image each (``--prompts`` x ``--n`` responses, sampled at temperature 1,
at most ``--max-new-tokens`` tokens each). Each round times, in alternating order:

- ``backend``: ``VLLMRolloutBackend.generate``, what a training step calls: the training
  inputs of every prompt (:func:`~trainer.rollout.prompts.encode_prompt`), the policy's
  weights pushed into the engine (and, on a GPU, waking it and putting it back to sleep),
  the engine's ``generate``, and the rollouts built from its outputs;
- ``direct``: ``LLM.generate`` alone, on the same requests and sampling parameters built
  beforehand, the engine already holding the weights (on a GPU, awake);
- ``hf``: the HF backend (transformers ``generate``) on the same prompts, for scale.

Throughput is response tokens per second (each side's own tokens: the seeds are the same,
so vLLM's two sides sample the same responses). The figure the backend is judged by is
``backend / direct`` (goal: at least 0.9); medians over ``--rounds`` rounds after a warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _prompts(count: int, image_size: int) -> list[Any]:
    from trainer.data.synth import generate_sample
    from trainer.engine.prompts import rollout_prompt

    rows = [generate_sample("math", index, image_size=image_size).row for index in range(count)]
    return [rollout_prompt(row, min_pixels=3136, max_pixels=image_size * image_size) for row in rows]


def _direct_inputs(backend: Any, prompts: list[Any], args: argparse.Namespace, seed: int):
    from trainer.rollout.vllm_backend import prompt_seed, request_for, sampling_kwargs

    requests = [request_for(backend.processor, prompt) for prompt in prompts]
    params = [
        backend._vllm.SamplingParams(
            **sampling_kwargs(
                args.n,
                args.max_new_tokens,
                1.0,
                False,
                prompt_seed(seed, index, args.n),
                eos_id=backend.eos_token_id,
                vision_ids=backend.vision_ids,
            )
        )
        for index in range(len(prompts))
    ]
    return requests, params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--size", default="small", choices=["tiny", "small", "2b", "7b"])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--image", type=int, default=112, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-hf", action="store_true", help="skip the HF backend's rounds")
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("vllm") is None:
        print("bench_vllm_rollout: vllm is not installed here; run it in .venv-vllm (bash bench/vllm_env.sh)")
        return 0

    import torch

    from trainer.models import build_tiny_model
    from trainer.rollout import HFRolloutBackend
    from trainer.rollout.vllm_backend import VLLMRolloutBackend

    model, processor = build_tiny_model(args.arch, args.size, seed=0)
    if torch.cuda.is_available():
        model = model.to("cuda", dtype=torch.bfloat16)
    prompts = _prompts(args.prompts, args.image)
    batch = args.prompts * args.n
    started = time.perf_counter()
    backend = VLLMRolloutBackend(model, processor, max_batch_size=batch)
    build_s = time.perf_counter() - started
    hf = None if args.no_hf else HFRolloutBackend(model, processor, max_batch_size=batch)

    def run_backend(seed: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        rollouts = backend.generate(prompts, n=args.n, max_new_tokens=args.max_new_tokens, seed=seed)
        return time.perf_counter() - t0, sum(len(r.response_ids) for r in rollouts)

    def run_direct(seed: int) -> tuple[float, int]:
        requests, params = _direct_inputs(backend, prompts, args, seed)
        backend._wake_and_sync()  # the baseline runs on an awake engine that has the weights
        t0 = time.perf_counter()
        outputs = backend.llm.generate(requests, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        return seconds, sum(len(c.token_ids) for o in outputs for c in o.outputs)

    def run_hf(seed: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        rollouts = hf.generate(prompts, n=args.n, max_new_tokens=args.max_new_tokens, seed=seed)
        return time.perf_counter() - t0, sum(len(r.response_ids) for r in rollouts)

    sides = {"backend": run_backend, "direct": run_direct} | ({} if hf is None else {"hf": run_hf})
    rates: dict[str, list[float]] = {name: [] for name in sides}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, list[int]] = {name: [] for name in sides}
    for round_index in range(args.rounds + 1):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            elapsed, count = sides[name](round_index)
            if round_index == 0:
                continue  # warm-up
            rates[name].append(count / elapsed)
            seconds[name].append(elapsed)
            tokens[name].append(count)
    ratios = [b / d for b, d in zip(rates["backend"], rates["direct"], strict=True)]
    import vllm

    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "versions": {"vllm": vllm.__version__, "torch": torch.__version__},
        "model": f"tiny:{args.arch}:{args.size}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": {"prompts": args.prompts, "n": args.n, "max_new_tokens": args.max_new_tokens},
        "engine_build_s": round(build_s, 2),
        "tokens_per_s": {name: round(statistics.median(values), 1) for name, values in rates.items()},
        "seconds": {name: round(statistics.median(values), 3) for name, values in seconds.items()},
        "tokens": {name: round(statistics.median(values)) for name, values in tokens.items()},
        "backend_over_direct": {
            "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3),
            "max": round(max(ratios), 3),
        },
    }
    print(f"model {figures['model']} ({figures['parameters'] / 1e6:.1f} M parameters) on {figures['device']}")
    limit = args.max_new_tokens
    print(f"batch {args.prompts} prompts x {args.n}, <= {limit} new tokens, {args.rounds} rounds")
    for name in sides:
        print(
            f"{name:>8}: {figures['tokens_per_s'][name]:>9.1f} tokens/s"
            f"  ({figures['seconds'][name]:.3f} s, {figures['tokens'][name]} tokens)"
        )
    ratio = figures["backend_over_direct"]
    print(f"backend / direct: {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    if "hf" in rates:
        print(f"backend / hf: {figures['tokens_per_s']['backend'] / figures['tokens_per_s']['hf']:.2f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
