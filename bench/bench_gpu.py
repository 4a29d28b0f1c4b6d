"""GRPO steps of random-init Qwen2-VL models on a GPU: time per phase, tokens, verl's throughput.

Usage::

    python bench/bench_gpu.py [--sizes tiny,2b] [--arch qwen2_vl] [--steps 3] [--prompts 8] [--n 8]
        [--max-response-length 128] [--image-size 224] [--data DIR] [--workdir DIR]
        [--out figures.json] [--set KEY=VALUE ...] [--allow-cpu] [--check-only]

For each size, the run is the ``tiny-cpu-demo`` preset (synthetic data of the eight task types,
made by ``trainer.data.synth`` unless ``--data`` names a directory of it) with the model
``tiny:<arch>:<size>`` in bfloat16, the ``hf`` rollout backend, V-Triune's frozen ViT and
connector, no evaluation and no checkpoints; ``--set`` overrides come last, so they can change
any of that (``--set engine.sharding=fsdp``). The engine runs it in this process
(``open_session`` + ``run_loop``, as ``python -m trainer train`` does) and every figure comes
from the run's own metrics (``metrics.jsonl``): ``perf/step_time``, ``perf/rollout_time``,
``perf/reward_time``, ``perf/update_time``, ``perf/tokens_per_s``, ``perf/peak_memory`` (GPU
peak allocation, counted from the end of the model build). The rollout backend is wrapped only
to count a step's prompt and response tokens apart.

Throughput is verl's (``verl/trainer/ppo/metric_utils.py`` ``compute_throughout_metrics``):
the step's prompt + response tokens / (step time x number of GPUs). Step 1 carries the CUDA
warm-up; the summary row of each size is the median of the later steps.

Without CUDA it refuses to run unless ``--allow-cpu`` (then in float32: bfloat16 matmuls are
slow on most CPUs). ``--check-only`` validates every size's config, imports the reward
verifiers and prints parameter counts (counted on the meta device), building nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESET = "tiny-cpu-demo"
PER_SOURCE = 40  # synthetic rows per source (32 train): enough for a few steps of 8 prompts
PHASES = ("step_time", "rollout_time", "reward_time", "update_time")


class CountingBackend:
    """A rollout backend that records the prompt and response tokens of each ``generate`` call."""

    def __init__(self, inner: Any, state: Any) -> None:
        self.inner = inner
        self.state = state
        self.calls: list[dict[str, int]] = []  # one per generate call, with the 0-based step it served

    def generate(self, prompts: Sequence[Any], **kwargs: Any) -> list[Any]:
        rollouts = self.inner.generate(prompts, **kwargs)
        self.calls.append(
            {
                "step": int(self.state.step),
                "responses": len(rollouts),
                "prompt_tokens": sum(r.prompt.length for r in rollouts),
                "response_tokens": sum(r.response_length for r in rollouts),
                "clipped": sum(bool(r.clipped) for r in rollouts),
            }
        )
        return rollouts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="tiny", help="comma-separated model sizes (tiny,small,2b,7b)")
    parser.add_argument("--arch", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--steps", type=int, default=3, help="training steps per size (the first warms up)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (rollout.prompts_per_step)")
    parser.add_argument("--n", type=int, default=8, help="responses per prompt (rollout.n)")
    parser.add_argument("--max-response-length", type=int, default=128, help="rollout.max_response_length")
    parser.add_argument(
        "--image-size", type=int, default=224, help="side of the synthetic images; also model.max_pixels"
    )
    parser.add_argument("--data", help="synthetic data directory (default: generated under --workdir)")
    parser.add_argument("--workdir", help="where data and run outputs go (default: a temporary directory)")
    parser.add_argument("--out", help="write the figures as JSON to this file (default: stdout only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (float32)")
    parser.add_argument(
        "--check-only", action="store_true", help="validate configs and imports, count parameters, stop"
    )
    args = parser.parse_args(argv)
    args.sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    if not args.sizes:
        parser.error("--sizes names no size")
    for name in ("steps", "prompts", "n", "max_response_length", "image_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def run_overrides(
    args: argparse.Namespace, size: str, *, data: str, output_dir: str, cuda: bool
) -> list[str]:
    """The bench's overrides of the preset for ``size``, then the user's ``--set``."""
    side = args.image_size
    return [
        f"model.path=tiny:{args.arch}:{size}",
        f"model.dtype={'bfloat16' if cuda else 'float32'}",
        f"model.min_pixels={min(56 * 56, side * side)}",
        f"model.max_pixels={side * side}",
        "model.freeze=[vit, connector]",  # V-Triune (and the schema's default); the preset trains all
        f"data.root={data}",
        "rollout.backend=hf",
        f"rollout.n={args.n}",
        f"rollout.prompts_per_step={args.prompts}",
        f"rollout.max_response_length={args.max_response_length}",
        "reward.workers=4",
        "eval.before_training=false",
        "eval.every=0",
        "checkpoint.every=0",
        "tracking.jsonl=metrics.jsonl",
        "tracking.console=true",
        "tracking.http=null",
        f"total_steps={args.steps}",
        f"output_dir={output_dir}",
        *args.overrides,
    ]


def gpu_count(config: Any) -> int:
    """GPUs the step runs on: the ray engine's workers x GPUs each, else the one of this process."""
    engine = getattr(config, "engine", None)  # the engine section is newer than some configs
    if engine is not None and engine.kind == "ray" and engine.gpus_per_worker > 0:
        return max(1, round(engine.workers * engine.gpus_per_worker))
    return 1  # the local engine uses one GPU (on CPU: figures per process)


def count_meta(arch: str, size: str, freeze_groups: Sequence[str]) -> tuple[int, int]:
    """(parameters, trainable parameters) of ``tiny:<arch>:<size>``, built on the meta device."""
    import torch

    from trainer.models import build_tokenizer, count_parameters, freeze, tiny_config
    from trainer.models.loading import MODEL_CLASSES

    with torch.device("meta"):
        model = MODEL_CLASSES[arch](tiny_config(build_tokenizer(), arch, size))  # type: ignore[arg-type]
    freeze(model, list(freeze_groups))
    return count_parameters(model), sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count(value: int) -> str:
    """``668160`` → ``0.67 M``, ``1977184768`` → ``1.98 G``."""
    return f"{value / 1e9:.2f} G" if value >= 1e9 else f"{value / 1e6:.2f} M"


def read_points(path: Path) -> dict[int, dict[str, float]]:
    """``{step: {key: value}}`` of the global (source null) points of a metrics JSONL."""
    steps: dict[int, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        point = json.loads(line)
        if "key" in point and point.get("source") is None:
            steps.setdefault(int(point["step"]), {})[point["key"]] = float(point["value"])
    return steps


def step_rows(points: dict[int, dict[str, float]], calls: list[dict[str, int]], gpus: int) -> list[dict]:
    """One row per training step: the perf metrics, the step's tokens and verl's throughput."""
    rows = []
    for step in sorted(points):
        perf = points[step]
        if "perf/step_time" not in perf:
            continue
        mine = [call for call in calls if call["step"] == step - 1]  # the metrics' step is 1-based
        prompt_tokens = sum(call["prompt_tokens"] for call in mine)
        response_tokens = sum(call["response_tokens"] for call in mine)
        responses = sum(call["responses"] for call in mine)
        tokens = prompt_tokens + response_tokens
        step_time = perf["perf/step_time"]
        rows.append(
            {
                "step": step,
                **{phase: perf.get(f"perf/{phase}") for phase in PHASES},
                "tokens_per_s": perf.get("perf/tokens_per_s"),
                "peak_memory_gib": perf.get("perf/peak_memory"),
                "responses": responses,
                "prompt_tokens": prompt_tokens,
                "response_tokens": response_tokens,
                "tokens": tokens,
                "mean_response_length": response_tokens / responses if responses else None,
                "clipped": sum(call["clipped"] for call in mine),
                "gpus": gpus,
                # verl compute_throughout_metrics: total_num_tokens / (time * n_gpus)
                "throughput": tokens / (step_time * gpus) if step_time > 0 else None,
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict[str, float | None]:
    """Median of each figure over the steps after the first (the first when there is one step)."""
    later = rows[1:] or rows
    summary: dict[str, float | None] = {}
    for key in (*PHASES, "tokens_per_s", "tokens", "mean_response_length", "throughput"):
        values = [row[key] for row in later if row[key] is not None]
        summary[key] = statistics.median(values) if values else None
    peaks = [row["peak_memory_gib"] for row in rows if row["peak_memory_gib"] is not None]
    summary["peak_memory_gib"] = max(peaks) if peaks else None
    summary["steps_in_median"] = len(later)
    return summary


def bench_size(args: argparse.Namespace, size: str, *, data: str, workdir: Path, cuda: bool) -> dict:
    """Run ``args.steps`` steps of ``size`` and return its figures."""
    import torch

    from trainer.config import build_run_spec, load_config
    from trainer.engine import open_session, run_loop

    output_dir = workdir / f"run-{args.arch}-{size}"
    overrides = run_overrides(args, size, data=data, output_dir=str(output_dir), cuda=cuda)
    config = load_config(PRESET, overrides)
    sources = list(build_run_spec(config, run_id=f"bench-{size}").sources)
    params, trainable = count_meta(args.arch, size, config.model.freeze)
    print(
        f"\n== {config.model.path}: {_count(params)} parameters ({_count(trainable)} trained), "
        f"{config.model.dtype}, {config.rollout.prompts_per_step} prompts x {config.rollout.n} responses "
        f"x <= {config.rollout.max_response_length} tokens, {args.steps} step(s)",
        flush=True,
    )
    (output_dir / "metrics.jsonl").unlink(missing_ok=True)  # the sink appends; a rerun starts afresh
    started = time.perf_counter()
    session = open_session(config, sources, output_dir=output_dir, checkpoints=False)
    setup_s = time.perf_counter() - started
    print(f"   setup {setup_s:.1f} s (data checks, model build, optimizer, reward workers)", flush=True)
    with session:
        counter = CountingBackend(session.runtime.backend, session.state)
        session.runtime = dataclasses.replace(session.runtime, backend=counter)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()  # peak of training, not of the fp32 build and cast
        started = time.perf_counter()
        run_loop(session)
        loop_s = time.perf_counter() - started
    gpus = gpu_count(config)
    engine = getattr(config, "engine", None)
    rows = step_rows(read_points(output_dir / "metrics.jsonl"), counter.calls, gpus)
    del session, counter
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {
        "size": size,
        "model_path": config.model.path,
        "dtype": config.model.dtype,
        "parameters": params,
        "trainable_parameters": trainable,
        "prompts_per_step": config.rollout.prompts_per_step,
        "n": config.rollout.n,
        "max_response_length": config.rollout.max_response_length,
        "micro_batch_size": config.algo.micro_batch_size,
        "engine": None if engine is None else engine.model_dump(mode="json"),
        "gpus": gpus,
        "setup_s": setup_s,
        "loop_s": loop_s,
        "overrides": overrides,
        "steps": rows,
        "median": summarize(rows),
    }


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[dict]) -> None:
    header = (
        f"{'size':6} {'step':>5} {'step s':>8} {'rollout':>8} {'reward':>8} {'update':>8} "
        f"{'tokens':>7} {'resp':>6} {'tok/s':>9} {'tok/s/GPU':>10} {'peak GiB':>9}"
    )
    print("\n" + header)
    print("-" * len(header))
    for result in results:
        for label, row in [(str(r["step"]), r) for r in result["steps"]] + [("med", result["median"])]:
            print(
                f"{result['size']:6} {label:>5} {_num(row['step_time'], '8.3f')} "
                f"{_num(row['rollout_time'], '8.3f')} {_num(row['reward_time'], '8.3f')} "
                f"{_num(row['update_time'], '8.3f')} {_num(row['tokens'], '7.0f')} "
                f"{_num(row['mean_response_length'], '6.1f')} {_num(row['tokens_per_s'], '9.0f')} "
                f"{_num(row['throughput'], '10.0f')} {_num(row['peak_memory_gib'], '9.2f')}"
            )
    print(
        "step s = rollout + reward + update + drawing rows and prompts; tokens = prompt + response tokens "
        "of the step;\nresp = mean response length; tok/s/GPU = verl's throughput, tokens / (step time x "
        "GPUs); med = median of the steps after the first\n(peak: the largest); peak GiB = "
        "torch.cuda.max_memory_allocated (process peak RSS on CPU)."
    )


def environment(cuda: bool) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    for optional in ("deepspeed", "vllm"):
        try:
            info[optional] = __import__(optional).__version__
        except ImportError:
            info[optional] = None
    if cuda:
        info["device_count"] = torch.cuda.device_count()
        info["device_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


def check_only(args: argparse.Namespace, data: str, workdir: Path) -> int:
    """Validate the config of every size and import the reward verifiers; print parameter counts."""
    import importlib

    from trainer.config import load_config

    for module in ("trainer.rewards", "math_verify", "latex2sympy2_extended", "pydantic", "trainer.engine"):
        importlib.import_module(module)
    for size in args.sizes:
        overrides = run_overrides(args, size, data=data, output_dir=str(workdir / size), cuda=True)
        config = load_config(PRESET, overrides)
        params, trainable = count_meta(args.arch, size, config.model.freeze)
        print(f"{config.model.path}: {params:,} parameters ({trainable:,} trained); config valid")
    return 0


def _schema_hint(sizes: Sequence[str]) -> None:
    """Say so when the config schema does not know a size that ``trainer.models.tiny`` builds."""
    from trainer.config.schema import TINY_SIZES
    from trainer.models.tiny import SHAPES

    unknown = [size for size in sizes if size in SHAPES and size not in TINY_SIZES]
    if unknown:
        print(
            f"bench_gpu: trainer/config/schema.py TINY_SIZES lists {', '.join(TINY_SIZES)} but not "
            f"{', '.join(unknown)}, which trainer/models/tiny.py builds; it should read "
            f"TINY_SIZES: tuple[str, ...] = {tuple(SHAPES)!r}",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from trainer.config import ConfigError
    from trainer.engine import PreflightError, TrainingStopped

    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data = args.data or str(workdir / "synth")
        try:
            if args.check_only:
                return check_only(args, data, workdir)
            if not cuda and not args.allow_cpu:
                print(
                    "bench_gpu: no CUDA device (torch.cuda.is_available() is False); this bench measures "
                    "a GPU. Pass --allow-cpu to run it on the CPU anyway (use --sizes tiny).",
                    file=sys.stderr,
                )
                return 2
            env = environment(cuda)
            print("environment " + json.dumps(env), flush=True)
            if args.data is None:
                from trainer.data.synth import generate_dataset

                started = time.perf_counter()
                generate_dataset(data, per_source=PER_SOURCE, image_size=args.image_size)
                print(f"synthetic data in {data} ({time.perf_counter() - started:.1f} s)", flush=True)
            results = [bench_size(args, size, data=data, workdir=workdir, cuda=cuda) for size in args.sizes]
        except (ConfigError, PreflightError, TrainingStopped) as exc:
            print(f"bench_gpu: {exc}", file=sys.stderr)
            _schema_hint(args.sizes)
            return 2
    print_table(results)
    figures = {"environment": env, "arch": args.arch, "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
