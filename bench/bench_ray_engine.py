"""One policy update on the Ray engine against the single-process update, on CPU.

Usage: python bench/bench_ray_engine.py [--sizes 8,16,32,64] [--repeats 5] [--quick]

Times the ``update`` stage of a GRPO step (``Policy.update``: old log-prob recompute +
forward/backward + one AdamW step) of ``tiny:qwen2_vl:tiny`` (float32, nothing frozen) on the
same fixed batch of rollouts (two image prompts, responses of 24-64 random tokens, advantages
drawn from N(0, 1)) with the same ``UpdateConfig`` (one optimizer step, micro-batches of 8), for:

- local, 1 thread: ``build_local_policy(...).update``, one torch thread; the baseline;
- local, 2 threads: the same with two torch threads (the cores two workers hold together);
- ray, 1 worker / 2 workers / 2 workers fsdp: ``engine.kind: ray`` (``start_ray_policy``), one
  CPU and one torch thread per worker, gradients summed with a gloo all-reduce (fsdp: FSDP2
  shards parameters, gradients and optimizer states and reduces the gradients itself).

The bench starts its own Ray head (the platform's embedded one, ``control.embedded.EmbeddedRay``,
2 CPUs, in a temporary folder; stopped at the end, also on error) and runs everything in one
process joined to it, as the trainer runs inside a Ray job. Each variant is one block: for each
batch size, one warm-up update, then ``--repeats`` updates alternating with the baseline's
(the local policy, held by that process all along), so that both see the same machine. A figure
is the median of its repeats; a ratio is the variant's median over the baseline's in the same
block: what the distributed path costs (the rollouts pickled to the workers, the all-reduce or
FSDP's gathers, Ray's calls). The second table is how each variant scales with the batch: its
time at each size over its time at the smallest, and a line ``time = fixed + per_rollout * B``
fitted through its medians.

On a 2-core machine the workers share the cores with the driver and Ray's own processes. One
worker holds one core, like the baseline: its ratio is the distributed path's overhead. Two
workers hold both: they have nothing to gain over two threads in one process (printed too), and
their figures are the overhead, not a speed-up (that takes a worker per GPU; bench/gpu_check.sh).
How busy the CPUs were in the second before the run is printed: the figures are comparable only
on a machine that runs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import ProcessorMixin

    from control.embedded import EmbeddedRay
    from trainer.config import TrainConfig
    from trainer.engine.policy import Policy
    from trainer.rollout import Rollout

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "tiny:qwen2_vl:tiny"
MICRO_BATCH = 8
LENGTHS = (24, 64)  # response lengths drawn uniformly from this range (inclusive)
QUESTIONS = ("What is 2+2?", "Find every dog in the picture and give its box.")
BASELINE = "local, 1 thread"
TWO_THREADS = "local, 2 threads"
# name -> torch threads of the local policy, or the Ray engine's settings
VARIANTS: dict[str, int | dict[str, int | str]] = {
    TWO_THREADS: 2,
    "ray, 1 worker": {"workers": 1, "sharding": "none"},
    "ray, 2 workers": {"workers": 2, "sharding": "none"},
    "ray, 2 workers fsdp": {"workers": 2, "sharding": "fsdp"},
}
BUSY_PERCENT = 20  # of all cores, before the run: above it, the figures are not to be trusted
WIDTH = max(map(len, VARIANTS)) + 2  # of the variant column
NOTE = """One worker holds one core, as local 1 thread does: its ratio is the overhead
of the distributed path. Two workers hold both cores and share them with the driver and Ray's own
processes: with no third core they have nothing to gain over one process on the same two cores
(local, 2 threads); their ratio to it (last table) is the overhead, about 1 at best, not a speed-up,
and a ratio below 1 against local 1 thread only shows the second core."""


def make_config(engine: dict | None = None) -> TrainConfig:
    """The tiny-cpu-demo preset on ``MODEL``, on the local engine or the Ray one (``engine``).

    The update reads no data: ``data.root`` names nothing.
    """
    from trainer.config import load_config

    overrides = [f"model.path={MODEL}", "model.dtype=float32", "data.root=/nonexistent", "seed=0"]
    if engine is not None:
        overrides += ["engine.kind=ray", "engine.cpus_per_worker=1", "engine.timeout_s=300"]
        overrides += [f"engine.{key}={value}" for key, value in engine.items()]
    return load_config("tiny-cpu-demo", overrides)


def make_batch(processor: ProcessorMixin, size: int, seed: int) -> tuple[list[Rollout], torch.Tensor]:
    """``size`` rollouts with random responses of 24-64 tokens over two image prompts, and advantages.

    The same (size, seed) gives the same batch.
    """
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000 + size)
    lengths = torch.randint(LENGTHS[0], LENGTHS[1] + 1, (size,), generator=generator).tolist()
    rollouts = random_rollouts(processor, lengths, generator)
    return rollouts, torch.randn(size, generator=generator)


def random_rollouts(
    processor: ProcessorMixin,
    lengths: list[int],
    generator: torch.Generator,
    prompts: tuple[tuple[str, tuple[int, int]], ...] = tuple(
        zip(QUESTIONS, ((224, 224), (112, 56)), strict=True)
    ),
) -> list[Rollout]:
    """Rollouts with random responses of ``lengths`` tokens, alternating over ``prompts`` (question,
    image size), as the unit tests' ``make_rollouts`` builds them (benches do not import tests/)."""
    import torch
    from PIL import Image

    from trainer.rollout import Rollout, RolloutPrompt, encode_prompt

    encoded = [
        encode_prompt(
            processor,
            RolloutPrompt(
                [{"role": "user", "content": f"<image>{q}"}], [Image.new("RGB", image, (9, 90, 200))]
            ),
        )
        for q, image in prompts
    ]
    return [
        Rollout(
            prompt_index=index % len(encoded),
            prompt=encoded[index % len(encoded)],
            # plain tokens only: ids 7.. (0..6 are the special tokens)
            response_ids=torch.randint(7, len(processor.tokenizer), (length,), generator=generator),
            response_text="",
            clipped=False,
        )
        for index, length in enumerate(lengths)
    ]


def timed_block(
    baseline: Policy, variant: Policy, threads: int, processor: ProcessorMixin, spec: dict
) -> dict[str, dict[str, list]]:
    """Per batch size: a warm-up of each, then ``repeats`` updates of each, alternating.

    ``threads``: torch threads of this process while the variant runs (the baseline has one).
    """
    import torch

    from trainer.algo import UpdateConfig

    config = UpdateConfig(micro_batch_size=MICRO_BATCH, seed=5)  # one optimizer step on the whole batch
    times: dict[str, dict[str, list]] = {"baseline": {}, "variant": {}}
    for size in spec["sizes"]:
        rollouts, advantages = make_batch(processor, size, spec["seed"])
        for which, policy, n in (("baseline", baseline, 1), ("variant", variant, threads)):
            torch.set_num_threads(n)
            policy.update(rollouts, advantages, config)  # warm-up
            times[which][str(size)] = []
        for _ in range(spec["repeats"]):
            for which, policy, n in (("baseline", baseline, 1), ("variant", variant, threads)):
                torch.set_num_threads(n)
                started = time.perf_counter()
                policy.update(rollouts, advantages, config)
                times[which][str(size)].append(time.perf_counter() - started)
    torch.set_num_threads(1)
    return times


def measure(spec: dict, out: Path) -> None:
    """In the process joined to the head (RAY_ADDRESS set): every block, written to ``out`` as JSON."""
    import torch

    from trainer.engine.build import build_local_policy, build_processor_for
    from trainer.engine.distributed import start_ray_policy

    torch.set_num_threads(1)
    local = make_config()
    processor = build_processor_for(local)
    baseline = build_local_policy(local, processor, torch.device("cpu"))
    results: dict[str, dict] = {}
    for name, setting in VARIANTS.items():
        if isinstance(setting, int):
            variant = build_local_policy(local, processor, torch.device("cpu"))
            results[name] = timed_block(baseline, variant, setting, processor, spec)
            continue
        started = time.perf_counter()
        try:
            policy = start_ray_policy(make_config(setting))
        except Exception as exc:  # reported in the table; the other variants still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        start_s = time.perf_counter() - started
        try:
            results[name] = timed_block(baseline, policy, 1, processor, spec) | {"start_s": start_s}
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            policy.close()
    out.write_text(json.dumps(results), encoding="utf-8")


def run_joined(head: EmbeddedRay, spec: dict, folder: Path) -> dict[str, dict]:
    """:func:`measure` in a process of its own joined to ``head`` (as the trainer in a Ray job)."""
    out = folder / "results.json"
    env = head.environment() | {"RAY_ADDRESS": f"127.0.0.1:{head.ports['gcs']}"}
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(spec), str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the measuring process exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def summarise(
    results: dict[str, dict], sizes: list[int]
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], dict[str, str], float]:
    """Medians per variant and size, each variant's ratio to its block's baseline, and the errors."""
    medians: dict[str, dict[int, float]] = {}
    ratios: dict[str, dict[int, float]] = {}
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    blocks = {name: r for name, r in results.items() if "error" not in r}
    medians[BASELINE] = {
        size: statistics.median(t for r in blocks.values() for t in r["baseline"][str(size)])
        for size in sizes
    }
    ratios[BASELINE] = dict.fromkeys(sizes, 1.0)
    for name, r in blocks.items():
        medians[name] = {size: statistics.median(r["variant"][str(size)]) for size in sizes}
        ratios[name] = {
            size: medians[name][size] / statistics.median(r["baseline"][str(size)]) for size in sizes
        }
    # how far the baseline's median moved between blocks: this run's noise
    drift = max(
        max(block) / min(block) - 1
        for block in (
            [statistics.median(r["baseline"][str(size)]) for r in blocks.values()] for size in sizes
        )
    )
    return medians, ratios, errors, drift


def print_tables(
    medians: dict[str, dict[int, float]],
    ratios: dict[str, dict[int, float]],
    errors: dict[str, str],
    sizes: list[int],
) -> None:
    names = [BASELINE, *VARIANTS]
    print(f"\nupdate time: median (s), and ratio to {BASELINE} in the same block (> 1: slower)")
    print(f"{'variant':{WIDTH}}" + "".join(f"{f'B={size}':>17}" for size in sizes))
    for name in names:
        if name in errors:
            print(f"{name:{WIDTH}}failed: {errors[name]}")
            continue
        print(f"{name:{WIDTH}}" + "".join(f"{medians[name][s]:9.3f} {ratios[name][s]:6.2f}x" for s in sizes))

    first = sizes[0]
    print(f"\nscaling with the batch: time at B / time at B={first}; line time = fixed + per_rollout * B")
    fit = len(sizes) >= 2
    header = "".join(f"{f'B={size}':>8}" for size in sizes[1:])
    print(f"{'variant':{WIDTH}}{header}" + (f"{'fixed (s)':>11}{'per rollout (ms)':>18}" if fit else ""))
    print(f"{'proportional':{WIDTH}}" + "".join(f"{size / first:7.2f}x" for size in sizes[1:]))
    for name in (n for n in names if n not in errors):
        row = "".join(f"{medians[name][s] / medians[name][first]:7.2f}x" for s in sizes[1:])
        if fit:
            line = statistics.linear_regression(sizes, [medians[name][s] for s in sizes])
            row += f"{line.intercept:11.3f}{line.slope * 1e3:18.2f}"
        print(f"{name:{WIDTH}}{row}")

    two = [n for n, setting in VARIANTS.items() if isinstance(setting, dict) and setting["workers"] == 2]
    if TWO_THREADS in ratios and any(n in ratios for n in two):
        print(f"\ntwo workers against the same two cores in one process ({TWO_THREADS}):")
        for name in (n for n in two if n in ratios):
            cells = "".join(f"{f'B={s}':>7} {ratios[name][s] / ratios[TWO_THREADS][s]:5.2f}x" for s in sizes)
            print(f"{name:{WIDTH}}{cells}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16,32,64", help="batch sizes in rollouts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per size (after a warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rollout batches")
    parser.add_argument("--quick", action="store_true", help="sizes 8,16 and 3 repeats (~1 minute)")
    parser.add_argument("--measure", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(json.loads(args.measure[0]), Path(args.measure[1]))
        return 0
    sizes = [8, 16] if args.quick else sorted({int(s) for s in args.sizes.split(",")})
    repeats = 3 if args.quick else args.repeats
    if repeats < 1 or not sizes or min(sizes) < 2:
        parser.error("--repeats must be >= 1 and every size >= 2 (two workers share a batch)")

    import psutil

    from control.embedded import EmbeddedRay, free_port

    busy_before = psutil.cpu_percent(interval=1.0)  # others' load: the figures need an idle machine
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="triune-bench-ray-", dir="/tmp"))
    head = EmbeddedRay(data_dir=folder / "ray", num_cpus=2, num_gpus=0, dashboard_port=free_port())
    try:
        head.start()
        head_s = time.perf_counter() - started
        results = run_joined(head, {"sizes": sizes, "repeats": repeats, "seed": args.seed}, folder)
    finally:
        head.stop()
        shutil.rmtree(folder, ignore_errors=True)
    medians, ratios, errors, drift = summarise(results, sizes)

    cores = os.cpu_count() or 1
    starts = ", ".join(
        f"{n.removeprefix('ray, ')} {r['start_s']:.1f} s" for n, r in results.items() if "start_s" in r
    )
    print(
        f"model            {MODEL}, float32, nothing frozen; micro-batches of {MICRO_BATCH}, one AdamW step"
    )
    print(
        f"batch            2 image prompts, responses of {LENGTHS[0]}-{LENGTHS[1]} tokens, the same per size"
    )
    print(f"timing           median of {repeats} update(s) after 1 warm-up, alternating with the baseline")
    print(f"machine          {cores} CPU core(s); Ray head of 2 CPUs; 1 CPU and 1 torch thread per worker")
    print(f"ray              head up in {head_s:.1f} s; workers started in {starts}")
    print_tables(medians, ratios, errors, sizes)
    if cores <= 2:
        print(f"\nnote: {cores} cores here. {NOTE}")
    print(f"\nnoise            the baseline's median moved by up to {drift:.0%} between blocks")
    warning = f"; over {BUSY_PERCENT}%: others competed, rerun on an idle machine"
    print(
        f"CPU busy         {busy_before:.0f}% in the second before the run"
        + (warning if busy_before > BUSY_PERCENT else "")
    )
    print(f"total            {time.perf_counter() - started:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
