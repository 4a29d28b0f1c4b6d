"""Box parsing with V-Triune's repairs, normalisation, and hostile answers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from trainer.rewards.boxes import Boxes, extract_boxes, normalize_boxes, parse_box_list
from trainer.rewards.tags import answer_content

from . import reference


def _boxes(text: str) -> list[tuple[list[float], str]] | None:
    parsed = parse_box_list(text)
    return (
        None
        if parsed is None
        else [(row, label) for row, label in zip(parsed.xyxy.tolist(), parsed.labels, strict=True)]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{'bbox_2d': [1, 2, 3, 4], 'label': 'dog'}]", [([1, 2, 3, 4], "dog")]),
        # double brackets are collapsed
        ("[[{'bbox_2d': [1, 2, 3, 4], 'label': 'dog'}]]", [([1, 2, 3, 4], "dog")]),
        # a truncated list keeps what precedes the last "},"
        (
            "[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}, {'bbox_2d': [5, 6, 7, 8], 'label': 'b'},"
            " {'bbox_2d': [9,",
            [([1, 2, 3, 4], "a"), ([5, 6, 7, 8], "b")],
        ),
        # confidence and other keys are ignored; floats are kept
        ("[{'bbox_2d': [1.5, 2, 3, 4], 'label': 'a', 'confidence': 0.9}]", [([1.5, 2, 3, 4], "a")]),
        # a duplicate of an earlier kept box is dropped, even with another label (1 == 1.0)
        (
            "[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}, {'bbox_2d': [1.0, 2, 3, 4], 'label': 'b'}]",
            [([1, 2, 3, 4], "a")],
        ),
        # reversed, too short, non-numeric, non-string label, missing keys: skipped, not fatal
        (
            "[{'bbox_2d': [3, 2, 1, 4], 'label': 'a'}, {'bbox_2d': [1, 2, 3], 'label': 'a'},"
            " {'bbox_2d': ['1', 2, 3, 4], 'label': 'a'}, {'bbox_2d': [1, 2, 3, 4], 'label': 7},"
            " {'box': [1, 2, 3, 4], 'label': 'a'}, [1, 2], {'bbox_2d': [0, 0, 5, 5], 'label': 'ok'}]",
            [([0, 0, 5, 5], "ok")],
        ),
        # degenerate (zero-area) boxes are valid; negative coordinates too
        ("[{'bbox_2d': [-5, 2, -5, 4], 'label': 'a'}]", [([-5, 2, -5, 4], "a")]),
        # NaN and ±Infinity parse as JSON but are not valid coordinates
        ("[{'bbox_2d': [NaN, 0, 1, 1], 'label': 'a'}, {'bbox_2d': [0, 0, Infinity, 1], 'label': 'a'}]", None),
        # an integer beyond the float range is not a coordinate
        ("[{'bbox_2d': [0, 0, 1" + "0" * 400 + ", 1], 'label': 'a'}]", None),
        ("", None),
        ("   ", None),
        ("not json at all", None),
        ("{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}", None),  # a dict, not a list: cut at "}," → no list
        ("[]", None),
        ("[" * 5000 + "]" * 5000, None),  # deep nesting
    ],
)
def test_parse_box_list(text, expected):
    assert _boxes(text) == expected


def test_answer_content_is_the_first_tag_pair():
    assert answer_content("a <answer> one </answer> <answer> two </answer>") == "one"
    assert answer_content("<answer> unclosed") == ""
    assert answer_content("no tags") == ""
    assert answer_content("</answer> before <answer>x</answer>") == "x"


@pytest.mark.parametrize(
    "response",
    [
        "",
        "<answer>\n" * 100_000,  # many unbalanced tags: linear time, no box
        "</answer><answer>",
        "\x00\xff\ufffd" * 10_000,
        "<answer>\n"
        + "[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}" * 30_000
        + "\n</answer>",  # 1.2 MB, no closing ]
    ],
)
def test_hostile_answers_give_no_box_or_a_defined_one(response):
    boxes = extract_boxes(response)
    assert boxes is None or (len(boxes) >= 1 and np.isfinite(boxes.xyxy).all())


def test_ten_thousand_boxes_parse():
    items = ", ".join(f"{{'bbox_2d': [{i}, 0, {i + 1}, 1], 'label': 'a'}}" for i in range(10_000))
    boxes = extract_boxes(f"<answer>\n[{items}]\n</answer>")
    assert len(boxes) == 10_000
    assert boxes.integral


def test_parsing_matches_the_reference_on_random_texts():
    rng = random.Random(3)
    pieces = [
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "},",
        "'bbox_2d'",
        "'label'",
        ":",
        ",",
        "'dog'",
        "1",
        "2.5",
        "-3",
        " ",
    ]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        mine = _boxes(text)
        theirs = reference.extract_bbox(text)
        assert (mine is None) == (theirs is None), text
        if mine is not None:
            assert mine == [(list(map(float, b["bbox_2d"])), b["label"]) for b in theirs], text


@pytest.mark.parametrize(
    ("box", "size", "expected"),
    [
        # int(x / w · 1000): 10/200·1000 = 50, 5/100·1000 = 50, 99.9/200·1000 = 499.5 → 499, 50/100·1000 = 500
        ([10.0, 5.0, 99.9, 50.0], (200, 100), [50, 50, 499, 500]),
        # truncation towards zero for negatives: -3/640·1000 = -4.6875 → -4
        ([-3.0, 0.0, 640.0, 480.0], (640, 480), [-4, 0, 1000, 1000]),
    ],
)
def test_normalize(box, size, expected):
    out = normalize_boxes(Boxes(np.array([box]), ("a",)), *size)
    assert out.xyxy.tolist() == [expected]
    assert out.integral


def test_normalize_drops_overflowing_boxes():
    boxes = Boxes(np.array([[0.0, 0.0, 1.7e308, 1.0], [0.0, 0.0, 10.0, 10.0]]), ("big", "small"))
    out = normalize_boxes(boxes, 1, 1)
    assert out.labels == ("small",)
    assert normalize_boxes(Boxes(np.array([[0.0, 0.0, 1.7e308, 1.0]]), ("big",)), 1, 1) is None
