"""Argument types and option groups shared by the ``python -m trainer`` commands."""

from __future__ import annotations

import argparse
import math


def _integer(text: str, minimum: int, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {words}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_config_arguments(parser: argparse.ArgumentParser, *, set_example: str) -> None:
    """``--config`` or ``--spec`` (one required) and repeatable ``--set KEY=VALUE`` overrides."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="YAML config file or preset name (tiny-cpu-demo, vtriune-7b, ...)")
    what.add_argument("--spec", help="run spec JSON (path or fsspec URI) written by the platform")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {set_example} (repeatable)",
    )
