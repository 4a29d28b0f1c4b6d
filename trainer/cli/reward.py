"""``python -m trainer reward``: score a file of responses against a dataset, print per-source means.

Responses are JSONL, one ``{"id": ..., "response": ...}`` (``id`` is the sample's
``extra_info.id``) or ``{"index": n, "response": ...}`` (n-th row of the dataset, from 0) per
line, optionally with ``"image_size": [width, height]`` (needed by detection samples with
normalised boxes) and ``"step"``. Several responses may point at one sample. Scoring runs in a
:class:`~trainer.rewards.RewardPool` (or on reward services with ``--service``); a response
that fails or runs past ``--timeout-s`` scores 0 and is counted in ``reward_errors``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from trainer.rewards import RewardClient, RewardPool, RewardRequest, count_errors
from trainer.rewards.requests import RewardResult
from trainer.rewards.service import TOKEN_ENV

COLUMNS = ["data_source", "reward_model", "extra_info"]
MAX_RESPONSE_LINE_CHARS = 16 * 1024 * 1024


class InputError(ValueError):
    """A responses or data file that cannot be used; the message says where."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``reward`` command."""
    parser.add_argument("--data", required=True, help="dataset file or URI (parquet, JSONL, JSONL.gz)")
    parser.add_argument("--responses", required=True, help='JSONL of {"id" or "index", "response"}')
    parser.add_argument("--workers", type=int, default=None, help="scoring processes (default: CPU count)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="time limit of one response (10)")
    parser.add_argument("--step", type=int, default=0, help="training step, for the IoU schedule (0)")
    parser.add_argument("--total-steps", type=int, default=1, help="steps of the run (1)")
    parser.add_argument(
        "--iou-schedule", default="dynamic", help="dynamic, average, or a threshold (dynamic)"
    )
    parser.add_argument(
        "--service", action="append", default=None, help="reward service address (repeatable)"
    )
    parser.add_argument("--token", default=None, help=f"reward service token (default: ${TOKEN_ENV})")
    parser.add_argument("--out", default=None, help="write one JSON line of rewards per response here")
    parser.add_argument("--json", action="store_true", help="print the per-source means as JSON")


def _samples(uri: str) -> tuple[list[dict], dict[str, int]]:
    """The dataset's rows (data_source, reward_model, extra_info) and their index by extra_info.id."""
    from trainer.data.reader import iter_samples

    rows, by_id = [], {}
    for row in iter_samples(uri, columns=COLUMNS):
        extra = row.get("extra_info") or {}
        sample_id = extra.get("id") if isinstance(extra, Mapping) else None
        if isinstance(sample_id, str):
            by_id.setdefault(sample_id, len(rows))
        rows.append({"data_source": row.get("data_source"), "reward_model": row.get("reward_model")})
    return rows, by_id


def _responses(path: str) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if len(line) > MAX_RESPONSE_LINE_CHARS:
                raise InputError(
                    f"{path}, line {line_number}: longer than {MAX_RESPONSE_LINE_CHARS} characters"
                )
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}, line {line_number}: not JSON ({exc})") from None
            if not isinstance(entry, dict):
                raise InputError(f"{path}, line {line_number}: must be a JSON object")
            yield line_number, entry


def build_requests(
    rows: list[dict],
    by_id: Mapping[str, int],
    responses: Iterator[tuple[int, dict]],
    args: argparse.Namespace,
) -> tuple[list[RewardRequest], list[Any]]:
    """One request per response line, and the id or index each came with."""
    requests, keys = [], []
    for line, entry in responses:
        where = f"{args.responses}, line {line}"
        response = entry.get("response")
        if not isinstance(response, str):
            raise InputError(f"{where}: 'response' must be a string")
        if "id" in entry:
            key = entry["id"]
            if key not in by_id:
                raise InputError(f"{where}: no sample has extra_info.id {key!r}")
            row = rows[by_id[key]]
        elif "index" in entry:
            key = entry["index"]
            if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(rows):
                raise InputError(f"{where}: 'index' must be an int in [0, {len(rows)}), got {key!r}")
            row = rows[key]
        else:
            raise InputError(f"{where}: give the sample as 'id' or 'index'")
        size = entry.get("image_size")
        step = entry.get("step", args.step)
        reward_model = row["reward_model"] if isinstance(row["reward_model"], Mapping) else {}
        requests.append(
            RewardRequest(
                response=response,
                reward_model=reward_model,
                step=step,
                total_steps=args.total_steps,
                image_size=tuple(size) if isinstance(size, list) else size,
                data_source=str(row["data_source"]),
                iou_schedule=args.iou_schedule,
            )
        )
        keys.append(key)
    return requests, keys


def _score(requests: list[RewardRequest], args: argparse.Namespace) -> list[RewardResult]:
    if args.service:
        token = args.token or os.environ.get(TOKEN_ENV, "")
        if not token:
            raise InputError(f"--service needs a token: --token or ${TOKEN_ENV}")
        with RewardClient(args.service, token) as client:
            return client.score(requests)
    with RewardPool(args.workers, args.timeout_s) as pool:
        return pool.score(requests)


def source_means(requests: list[RewardRequest], results: list[RewardResult]) -> dict[str, dict[str, float]]:
    """Per data source: ``count``, ``reward_errors`` and the mean of every reward key."""
    sums: dict[str, dict[str, float]] = {}
    seen: dict[str, dict[str, int]] = {}
    for request, result in zip(requests, results, strict=True):
        source_sums = sums.setdefault(request.data_source, {})
        source_seen = seen.setdefault(request.data_source, {})
        for key, value in result.rewards.items():
            source_sums[key] = source_sums.get(key, 0.0) + value
            source_seen[key] = source_seen.get(key, 0) + 1
    errors = count_errors(requests, results)
    table = {}
    for source in sorted(sums):
        means = {key: sums[source][key] / seen[source][key] for key in sums[source]}
        table[source] = {
            "count": errors[source].count,
            "reward_errors": errors[source].reward_errors,
            **means,
        }
    return table


def _print_table(table: dict[str, dict[str, float]]) -> None:
    counts = ["count", "reward_errors"]
    means = ["final_reward", "accuracy_reward", "format_reward"]
    width = max([len("data_source"), *(len(source) for source in table)])
    print(f"{'data_source':<{width}}" + "".join(f"{name:>17}" for name in counts + means))
    for source, values in table.items():
        cells = [f"{int(values[name]):>17d}" for name in counts] + [
            f"{values[name]:>17.4f}" for name in means
        ]
        print(f"{source:<{width}}" + "".join(cells))


def run(args: argparse.Namespace) -> int:
    """Score the responses and print per-source means; 2 for unusable input."""
    try:
        rows, by_id = _samples(args.data)
        requests, keys = build_requests(rows, by_id, _responses(args.responses), args)
        if not requests:
            raise InputError(f"{args.responses}: no responses")
        results = _score(requests, args)
    except (InputError, OSError, ValueError) as exc:
        print(f"reward: {exc}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            for key, request, result in zip(keys, requests, results, strict=True):
                entry = {
                    "key": key,
                    "data_source": request.data_source,
                    "rewards": result.rewards,
                    "error": result.error,
                }
                handle.write(json.dumps(entry) + "\n")
    table = source_means(requests, results)
    if args.json:
        print(json.dumps(table, indent=2, sort_keys=True))
    else:
        _print_table(table)
    return 0
