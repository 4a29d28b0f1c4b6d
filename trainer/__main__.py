"""Command line of the RL engine: ``python -m trainer <command> [options]``.

Each command lives in its own module under :mod:`trainer.cli` and exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under trainer.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("trainer.cli.synth", "generate a synthetic dataset of the eight task types"),
    "reward": ("trainer.cli.reward", "score a file of responses against a dataset"),
    "train": ("trainer.cli.train", "run GRPO training from a config or run spec"),
    "sft": ("trainer.cli.sft", "supervised warm-start on the ground truths; writes a HF model directory"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
