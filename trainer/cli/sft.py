"""``python -m trainer sft``: supervised warm-start on the ground truths of a config's data.

Reads the same config (or preset, or run spec) as ``train``: model, data sources, image
sizes and ``data.box_coordinates``. Writes a Hugging Face model directory to ``--out`` that a
GRPO run takes as ``model.path``::

    python -m trainer sft --config tiny-cpu-demo --out var/sft/tiny --steps 60
    python -m trainer train --config tiny-cpu-demo --set model.path=var/sft/tiny

Exit status: 0 when the model was written, 2 when the warm-start could not start (an invalid
config, unreadable data, bad options), 1 when it stopped on the way (a non-finite loss).
"""

from __future__ import annotations

import argparse
import sys

from trainer.cli.args import add_config_arguments, non_negative_int, positive_float, positive_int
from trainer.cli.train import resolve
from trainer.config import ConfigError


def accuracy(text: str) -> float:
    """An accuracy in (0, 1] for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``sft`` command."""
    add_config_arguments(parser, set_example="model.path=tiny:qwen2_vl:small")
    parser.add_argument("--out", required=True, help="directory of the Hugging Face model to write")
    parser.add_argument("--steps", type=positive_int, default=100, help="optimizer steps (100)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="samples per step (16)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate (1e-3)")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=10, help="linear warm-up steps (10)")
    parser.add_argument(
        "--log-every", type=non_negative_int, default=10, help="a loss line every N steps (10)"
    )
    parser.add_argument(
        "--target-accuracy",
        type=accuracy,
        help="stop training a source once its greedy accuracy on its dev rows (the last rows of its "
        "training split, never trained on) reaches this, e.g. 0.5 (default: train every source to the end)",
    )
    parser.add_argument(
        "--eval-every", type=positive_int, default=200, help="steps between dev evaluations (200)"
    )
    parser.add_argument("--eval-rows", type=positive_int, default=48, help="dev rows per source (48)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(output_dir=None)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, warm-start, write the model; one line per problem on failure."""
    if not args.out.strip():
        print("sft: --out must not be empty", file=sys.stderr)
        return 2
    try:
        config, sources = resolve(args)
    except ConfigError as exc:
        print(f"sft: {exc}", file=sys.stderr)
        return 2

    import torch

    from trainer.engine import PreflightError
    from trainer.sft import SFTOptions, run_sft

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = SFTOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        log_every=args.log_every,
        target_accuracy=args.target_accuracy,
        eval_every=args.eval_every,
        eval_rows=args.eval_rows,
    )
    try:
        summary = run_sft(
            config, sources, options, out_dir=args.out, log=lambda line: print(line, flush=True)
        )
    except PreflightError as exc:
        print(f"sft: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"sft: {exc}", file=sys.stderr)
        return 1
    for line in summary.skipped_rows:
        print(f"warning: {line}", file=sys.stderr)
    last = summary.losses[-1] if summary.losses else float("nan")
    for name, step in summary.reached.items():
        print(f"sft: {name} reached accuracy {args.target_accuracy:g} at step {step}", flush=True)
    print(
        f"sft: {summary.steps} step(s), {summary.samples} sample(s), final loss {last:.4f}, "
        f"{summary.seconds:.1f} s; model in {args.out}",
        flush=True,
    )
    return 0
