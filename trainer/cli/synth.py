"""``python -m trainer synth``: write a synthetic dataset of the eight task types."""

from __future__ import annotations

import argparse
import sys

from trainer.data.synth import DIFFICULTIES, TASKS, generate_dataset


def _task_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(TASKS)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``synth`` command."""
    parser.add_argument("--out", required=True, help="output directory or fsspec URI")
    parser.add_argument(
        "--per-source", type=int, default=1000, help="samples per source, train + test (1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (0)")
    parser.add_argument(
        "--image-size", type=int, default=224, help="side of the square images in pixels (224)"
    )
    parser.add_argument(
        "--difficulty", choices=list(DIFFICULTIES), default="easy", help="easy, medium or hard"
    )
    parser.add_argument("--format", choices=["parquet", "jsonl"], default="parquet", dest="file_format")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of each source in its test file"
    )
    parser.add_argument(
        "--format-ratio", type=float, default=0.1, help="format_ratio written in every sample"
    )
    parser.add_argument(
        "--tasks", type=_task_list, default=None, help=f"comma-separated subset of {','.join(TASKS)}"
    )


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print one line per written file."""
    try:
        manifest = generate_dataset(
            args.out,
            tasks=args.tasks,
            per_source=args.per_source,
            seed=args.seed,
            image_size=args.image_size,
            difficulty=args.difficulty,
            file_format=args.file_format,
            test_fraction=args.test_fraction,
            format_ratio=args.format_ratio,
        )
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    for source in manifest["sources"]:
        for split in source["splits"].values():
            print(f"{args.out.rstrip('/')}/{split['file']}  ({split['rows']} rows)")
    print(f"{args.out.rstrip('/')}/manifest.json")
    return 0
