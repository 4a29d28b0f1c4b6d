"""Pre-flight pieces: row samples, the verifier scan, long-prompt reports, the box-frame verdict."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.engine.preflight import (
    box_frame_warning,
    boxes_outside,
    check_verifiers,
    long_prompts_problem,
    predicted_boxes,
    sample_indices,
)
from trainer.engine.sources import SourceData

from .factories import DET_RM, MATH_RM


@pytest.mark.parametrize(
    ("size", "count", "expected_len"), [(0, 4, 0), (3, 4, 3), (4, 4, 4), (100, 4, 4), (10**6, 32, 32)]
)
def test_sample_indices(size: int, count: int, expected_len: int) -> None:
    picked = sample_indices(size, count, seed=1)
    assert len(picked) == expected_len == len(set(picked))
    assert picked == sorted(picked) and all(0 <= i < size for i in picked)
    assert picked == sample_indices(size, count, seed=1)


def _source(train_verifiers, test_verifiers=()) -> SourceData:
    def rows(names):
        return [{"reward_model": {**MATH_RM, "verifier": name}} for name in names]

    return SourceData(
        "src",
        1.0,
        rows(train_verifiers),
        rows(test_verifiers),
        train_origin=[("/d/train.parquet", i + 1) for i in range(len(train_verifiers))],
        test_origin=[("/d/test.parquet", i + 1) for i in range(len(test_verifiers))],
    )


def test_unknown_verifiers_are_reported_once_per_name_and_split() -> None:
    data = _source(["mathverify", "nope", "nope", "also\x00bad"], ["nope"])
    problems = [str(p) for p in check_verifiers({"src": data})]
    known = "choice, detection, exact, mathverify, number"
    assert problems == [
        f"src train: 2 row(s) name the unknown verifier 'nope' (first: train.parquet, row 2); "
        f"known verifiers: {known}",
        f"src train: 1 row(s) name the unknown verifier 'also\\x00bad' (first: train.parquet, row 4); "
        f"known verifiers: {known}",
        f"src test: 1 row(s) name the unknown verifier 'nope' (first: test.parquet, row 1); "
        f"known verifiers: {known}",
    ]


def test_known_verifiers_and_rows_without_one_pass_the_scan() -> None:
    data = _source(["mathverify", "detection"])
    data.train.append({"reward_model": None})  # reported by validate_sample, not by the scan
    assert check_verifiers({"src": data}) == []


def test_long_prompts_name_the_longest() -> None:
    lengths = [(100, "f, row 1"), (130, "f, row 2"), (129, "f, row 3")]
    problem = long_prompts_problem("s", "test", lengths, 4, 128)
    assert str(problem) == (
        "s test: 2 of 4 checked rows have prompts longer than data.max_prompt_length (128), up to 130 tokens "
        "with their image tokens (f, row 2); raise data.max_prompt_length or lower model.max_pixels"
    )
    assert long_prompts_problem("s", "test", lengths, 4, 130) is None  # equal to the limit fits
    assert long_prompts_problem("s", "test", [], 0, 1) is None


def test_predicted_boxes_keep_detection_responses_with_valid_boxes() -> None:
    box = "<answer>\n[{'bbox_2d': [1, 2, 30, 40], 'label': 'a'}]\n</answer>"
    found = predicted_boxes(
        [
            ("detection", box, (56, 56)),
            ("mathverify", box, (56, 56)),  # not a detection sample
            ("detection", "no boxes here", (56, 56)),
            ("detection", box, None),  # no image size
        ]
    )
    assert len(found) == 1
    assert found[0][0].tolist() == [[1.0, 2.0, 30.0, 40.0]] and found[0][1] == (56, 56)


@pytest.mark.parametrize(
    ("boxes", "frame", "expected"),
    [
        # 112 x 56 image: x <= 112, y <= 56
        ([[0, 0, 112, 56], [10, 10, 20, 20]], "pixel", (0, 2)),
        ([[0, 0, 113, 10], [0, 0, 10, 57], [-1, 0, 5, 5]], "pixel", (3, 3)),
        ([[0, 0, 1000, 1000], [0, 0, 500, 900]], "relative1000", (0, 2)),
        ([[0, 0, 1001, 5], [0, 0, 500, 900]], "relative1000", (1, 2)),
    ],
)
def test_boxes_outside(boxes, frame, expected) -> None:
    assert boxes_outside([(np.array(boxes, dtype=float), (112, 56))], frame) == expected


def test_box_frame_warning_needs_enough_boxes_and_a_majority_outside() -> None:
    assert box_frame_warning(3, 3, "pixel") is None  # fewer than 4 boxes: no verdict
    assert box_frame_warning(1, 4, "pixel") is None  # 25 % outside: noise of an untrained model
    pixel = box_frame_warning(2, 4, "pixel")
    assert pixel == (
        "2 of 4 predicted boxes lie outside the image the model saw: the model seems to write 0-1000 "
        "relative coordinates (as Qwen2-VL does) but data.box_coordinates is pixel; set "
        "data.box_coordinates=relative1000 if so, or detection rewards will stay near 0"
    )
    relative = box_frame_warning(9, 10, "relative1000")
    assert relative is not None and relative.startswith(
        "9 of 10 predicted boxes have coordinates outside 0-1000"
    )
    assert "set data.box_coordinates=pixel" in relative


def test_detection_factory_is_a_valid_reward_model() -> None:
    from trainer.rewards import validate_reward_model

    validate_reward_model(DET_RM)
