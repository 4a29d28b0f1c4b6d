"""Checks before the first step, so that a bad run fails in seconds with a list of what to fix.

On a seeded sample of each source's rows (train and test):

- every row passes :func:`trainer.data.schema.validate_sample` (schema, images readable and
  not bombs, reward model scorable, ground-truth boxes on the 0–1000 frame);
- the prompt, with its image tokens and the longest prompt-pool sentences, fits
  ``data.max_prompt_length`` measured with the model's processor (otherwise generation or the
  log-prob forward fails far into the run with "Image features and image tokens do not match");

and over every row, the verifier names are known. After the first rollouts,
:func:`box_frame_warning` says when predicted boxes systematically lie outside the frame
``data.box_coordinates`` implies (a Qwen2-VL writing 0–1000 under ``pixel``, or the reverse).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from transformers.processing_utils import ProcessorMixin

from trainer.config import TrainConfig
from trainer.data.images import ImageError
from trainer.data.prompt_pool import is_augmented
from trainer.data.schema import validate_sample
from trainer.engine.errors import PreflightError, Problem
from trainer.engine.prompts import longest_augmentation, rollout_prompt
from trainer.engine.scoring import DETECTION_VERIFIERS, BoxCoordinates
from trainer.engine.sources import SourceData
from trainer.rewards import known_verifiers
from trainer.rewards.boxes import extract_boxes
from trainer.rollout import encode_prompt

# Rows checked per source and split; the verifier scan covers every row.
DEFAULT_SAMPLE_ROWS = 32
# The box-frame verdict needs this many parsed boxes, and warns when this share is outside.
MIN_BOXES = 4
OUTSIDE_SHARE = 0.5


def sample_indices(size: int, count: int, seed: int) -> list[int]:
    """``count`` distinct row indices out of ``size`` (all of them when fewer), sorted, seeded.

    >>> sample_indices(5, 10, 0)
    [0, 1, 2, 3, 4]
    """
    if size <= count:
        return list(range(size))
    return sorted(random.Random(seed).sample(range(size), count))


def check_verifiers(sources: Mapping[str, SourceData]) -> list[Problem]:
    """One problem per (source, split, unknown verifier name), over every row."""
    known = set(known_verifiers())
    problems: list[Problem] = []
    for data in sources.values():
        for split, rows in (("train", data.train), ("test", data.test)):
            unknown: dict[str, list[int]] = {}
            for index, row in enumerate(rows):
                reward_model = row.get("reward_model")
                name = reward_model.get("verifier") if isinstance(reward_model, Mapping) else None
                if isinstance(name, str) and name not in known:
                    unknown.setdefault(name, []).append(index)
            for name, indices in unknown.items():
                problems.append(
                    Problem(
                        f"{data.name} {split}",
                        f"{len(indices)} row(s) name the unknown verifier {name[:60]!r} "
                        f"(first: {data.origin(split, indices[0])}); "
                        f"known verifiers: {', '.join(sorted(known))}",
                    )
                )
    return problems


def _token_length(processor: ProcessorMixin) -> Callable[[str], int]:
    tokenizer = processor.tokenizer
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def prompt_length(row: Mapping[str, Any], processor: ProcessorMixin, config: TrainConfig) -> int:
    """Tokens of ``row``'s prompt as the model sees it: chat template, image tokens, longest augmentation."""
    if config.data.prompt_pool and is_augmented(row):
        row = longest_augmentation(row, _token_length(processor))
    prompt = rollout_prompt(row, min_pixels=config.model.min_pixels, max_pixels=config.model.max_pixels)
    return encode_prompt(processor, prompt).length


def check_row(
    row: Mapping[str, Any], where: str, processor: ProcessorMixin, config: TrainConfig
) -> tuple[list[Problem], int | None]:
    """The problems of one row (schema, rewards, images) and its prompt length (None when not measured)."""
    errors = validate_sample(row)
    if errors:
        return [Problem(where, str(error)) for error in errors], None
    try:
        return [], prompt_length(row, processor, config)
    except (ImageError, ValueError) as exc:
        return [Problem(where, f"images: {exc}")], None


def long_prompts_problem(
    source: str, split: str, lengths: Sequence[tuple[int, str]], checked: int, limit: int
) -> Problem | None:
    """One problem for the rows of a split whose prompt exceeds ``limit`` tokens; ``lengths`` is
    (tokens, origin) of every measured row.

    >>> print(long_prompts_problem("m", "train", [(90, "a.parquet, row 1"), (50, "a.parquet, row 2")], 2, 64))
    m train: 1 of 2 checked rows have prompts longer than data.max_prompt_length (64), up to 90 tokens \
with their image tokens (a.parquet, row 1); raise data.max_prompt_length or lower model.max_pixels
    """
    over = [(tokens, origin) for tokens, origin in lengths if tokens > limit]
    if not over:
        return None
    tokens, origin = max(over, key=lambda item: item[0])
    return Problem(
        f"{source} {split}",
        f"{len(over)} of {checked} checked rows have prompts longer than data.max_prompt_length ({limit}), "
        f"up to {tokens} tokens with their image tokens ({origin}); raise data.max_prompt_length or "
        "lower model.max_pixels",
    )


def check_rows(
    sources: Mapping[str, SourceData],
    processor: ProcessorMixin,
    config: TrainConfig,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    skip_verifiers: Iterable[str] = (),
) -> list[Problem]:
    """:func:`check_row` on a seeded sample of each source and split; long prompts are reported
    once per split. Rows whose verifier is in ``skip_verifiers`` (reported already) are skipped."""
    skip = set(skip_verifiers)
    problems: list[Problem] = []
    for number, data in enumerate(sources.values()):
        for split, rows in (("train", data.train), ("test", data.test)):
            lengths: list[tuple[int, str]] = []
            indices = sample_indices(len(rows), sample_rows, config.seed + number)
            for index in indices:
                row = rows[index]
                reward_model = row.get("reward_model")
                if isinstance(reward_model, Mapping) and reward_model.get("verifier") in skip:
                    continue
                found, length = check_row(row, data.where(split, index), processor, config)
                problems += found
                if length is not None:
                    lengths.append((length, data.origin(split, index)))
            long = long_prompts_problem(
                data.name, split, lengths, len(indices), config.data.max_prompt_length
            )
            if long is not None:
                problems.append(long)
    return problems


def preflight(
    sources: Mapping[str, SourceData],
    processor: ProcessorMixin,
    config: TrainConfig,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> int:
    """Run every check; raise :class:`PreflightError` with all problems, else return the rows checked."""
    problems = check_verifiers(sources)
    known = set(known_verifiers())
    unknown = {
        row["reward_model"].get("verifier")
        for data in sources.values()
        for row in (*data.train, *data.test)
        if isinstance(row.get("reward_model"), Mapping) and row["reward_model"].get("verifier") not in known
    }
    problems += check_rows(sources, processor, config, sample_rows=sample_rows, skip_verifiers=unknown)
    if problems:
        raise PreflightError(problems)
    return sum(min(len(rows), sample_rows) for data in sources.values() for rows in (data.train, data.test))


# ---------------------------------------------------------------------------------------------- boxes


def predicted_boxes(
    responses: Iterable[tuple[str, str, tuple[int, int] | None]],
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """``(xyxy (N, 4), (width, height))`` of every detection response that holds valid boxes.

    ``responses`` yields (verifier, response text, image size the model saw).
    """
    found = []
    for verifier, text, size in responses:
        if verifier not in DETECTION_VERIFIERS or size is None:
            continue
        boxes = extract_boxes(text)
        if boxes is not None and len(boxes):
            found.append((boxes.xyxy, size))
    return found


def boxes_outside(
    boxes: Sequence[tuple[np.ndarray, tuple[int, int]]], box_coordinates: BoxCoordinates
) -> tuple[int, int]:
    """(boxes outside the frame, boxes): the frame is the image in pixels, or 0–1000 for ``relative1000``.

    >>> boxes_outside([(np.array([[0, 0, 500, 900], [1, 1, 10, 10]]), (112, 112))], "pixel")
    (1, 2)
    """
    outside = total = 0
    for xyxy, (width, height) in boxes:
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        if box_coordinates == "pixel":
            limits = np.array([width, height, width, height], dtype=np.float64)
        else:
            limits = np.full(4, 1000.0)
        out = ((xyxy < 0) | (xyxy > limits)).any(axis=1)
        outside += int(out.sum())
        total += int(xyxy.shape[0])
    return outside, total


def box_frame_warning(
    outside: int,
    total: int,
    box_coordinates: BoxCoordinates,
    *,
    min_boxes: int = MIN_BOXES,
    share: float = OUTSIDE_SHARE,
) -> str | None:
    """A warning when at least ``share`` of ``total >= min_boxes`` predicted boxes lie outside the frame.

    >>> box_frame_warning(1, 8, "pixel") is None
    True
    """
    if total < min_boxes or outside < share * total:
        return None
    if box_coordinates == "pixel":
        return (
            f"{outside} of {total} predicted boxes lie outside the image the model saw: the model seems to "
            "write 0-1000 relative coordinates (as Qwen2-VL does) but data.box_coordinates is pixel; "
            "set data.box_coordinates=relative1000 if so, or detection rewards will stay near 0"
        )
    return (
        f"{outside} of {total} predicted boxes have coordinates outside 0-1000: the model seems to write "
        "absolute pixels (as Qwen2.5-VL does) but data.box_coordinates is relative1000; "
        "set data.box_coordinates=pixel if so, or detection rewards will stay near 0"
    )
