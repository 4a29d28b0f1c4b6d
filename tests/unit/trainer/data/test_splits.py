"""Train/test splits by hash and by Orsta file name."""

from __future__ import annotations

import pytest

from trainer.data.splits import (
    SplitFile,
    group_split_files,
    parse_split_name,
    split_file_name,
    split_key,
    split_of,
    split_rows,
)


def _row(sample_id=None):
    return {"extra_info": {"id": sample_id}} if sample_id is not None else {}


def test_split_key_prefers_the_id():
    assert split_key(_row("abc"), 7) == "id:abc"
    assert split_key(_row(), 7) == "row:7"
    assert split_key({"extra_info": {"id": ""}}, 7) == "row:7"
    assert split_key({"extra_info": "oops"}, 7) == "row:7"


def test_split_is_deterministic_and_seeded():
    rows = [_row(f"s{i}") for i in range(2000)]
    first = [split_of(r, i, seed=1, test_fraction=0.2) for i, r in enumerate(rows)]
    again = [split_of(r, i, seed=1, test_fraction=0.2) for i, r in enumerate(rows)]
    other = [split_of(r, i, seed=2, test_fraction=0.2) for i, r in enumerate(rows)]
    assert first == again
    assert first != other
    # 2000 draws at p = 0.2: mean 400, sd = sqrt(2000 * 0.2 * 0.8) = 17.9; 5 sd either side
    assert 310 < first.count("test") < 490


def test_split_by_id_survives_reordering():
    rows = [_row(f"s{i}") for i in range(200)]
    forward = {r["extra_info"]["id"]: split_of(r, i, seed=3) for i, r in enumerate(rows)}
    backward = {r["extra_info"]["id"]: split_of(r, i, seed=3) for i, r in enumerate(reversed(rows))}
    assert forward == backward


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, "train"), (1.0, "test")])
def test_split_extremes(fraction, expected):
    assert {split_of(_row(f"{i}"), i, test_fraction=fraction) for i in range(50)} == {expected}


def test_split_rows_partitions():
    rows = [_row(f"s{i}") for i in range(100)]
    train = list(split_rows(rows, "train", seed=5, test_fraction=0.3))
    test = list(split_rows(rows, "test", seed=5, test_fraction=0.3))
    assert len(train) + len(test) == 100
    assert not {id(r) for r in train} & {id(r) for r in test}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: split_of({}, 0, test_fraction=1.5), "test_fraction must be in [0, 1], got 1.5"),
        (lambda: list(split_rows([], "valid")), "unknown split 'valid'; known: train, test"),
        (lambda: split_file_name("dev", "math", "s", 1), "unknown split 'dev'; known: train, test"),
        (
            lambda: split_file_name("train", "maths", "s", 1),
            "unknown task 'maths'; known: math, puzzle, science, chart, ocr, counting, detection, grounding",
        ),
        (lambda: split_file_name("train", "math", "a/b", 1), "source 'a/b' cannot be part of a file name"),
    ],
)
def test_split_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("train_math_synth_math_800.parquet", SplitFile("train", "math", "synth_math", 800, "parquet")),
        (
            "s3://b/d/test_detection_v3det_train_200.parquet",
            SplitFile("test", "detection", "v3det_train", 200, "parquet"),
        ),
        ("train_ocr_llava_ocr_12.jsonl.gz", SplitFile("train", "ocr", "llava_ocr", 12, "jsonl.gz")),
        ("train_maths_x_1.parquet", None),
        ("validation_math_x_1.parquet", None),
        ("train_math_x.parquet", None),
        ("notes.txt", None),
    ],
)
def test_parse_split_name(name, expected):
    assert parse_split_name(name) == expected


def test_name_round_trip():
    name = split_file_name("test", "grounding", "ref_coco", 5, "jsonl")
    assert name == "test_grounding_ref_coco_5.jsonl"
    assert parse_split_name(name) == SplitFile("test", "grounding", "ref_coco", 5, "jsonl")


def test_group_split_files():
    uris = [
        "d/train_math_a_10.parquet",
        "d/test_math_a_2.parquet",
        "d/train_chart_b_5.parquet",
        "d/train_chart_b_6.parquet",
    ]
    assert group_split_files(uris) == {
        "a": {"train": ["d/train_math_a_10.parquet"], "test": ["d/test_math_a_2.parquet"]},
        "b": {"train": ["d/train_chart_b_5.parquet", "d/train_chart_b_6.parquet"]},
    }
    with pytest.raises(ValueError, match=r"^'d/x.parquet' is not named \{split\}_\{task\}_\{source\}_\{n\}"):
        group_split_files(["d/x.parquet"])
