"""The synthetic generator: schema-valid rows, answers its own verifiers accept, exact reproducibility."""

from __future__ import annotations

import json
import re

import pytest

from trainer.__main__ import main
from trainer.data.reader import iter_samples
from trainer.data.schema import task_type, validate_sample
from trainer.data.synth import (
    DIFFICULTIES,
    OCR_WORDS,
    TASKS,
    generate_dataset,
    generate_sample,
    get_difficulty,
    get_task,
    normalize_box,
    register_task,
)

LEVELS = list(DIFFICULTIES)
SAMPLES = range(6)


def _samples(task, level, size=224):
    return [generate_sample(task, i, seed=3, difficulty=level, image_size=size) for i in SAMPLES]


def _wrap(inner: str) -> str:
    """The answer as a model following the prompt would write it."""
    return f"<think>\nI read the image and work it out.\n</think>\n<answer>\n{inner}\n</answer>"


def _pixel_answer(boxes) -> str:
    items = ", ".join(
        f"{{'bbox_2d': [{b[0]}, {b[1]}, {b[2]}, {b[3]}], 'label': '{label}'}}" for label, b in boxes
    )
    return f"[{items}]"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("task", list(TASKS))
def test_rows_pass_the_schema(task, level):
    for sample in _samples(task, level):
        assert validate_sample(sample.row) == [], sample.row["extra_info"]
        assert task_type(sample.row) == task
        assert sample.row["data_source"] == f"synth_{task}"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("task", list(TASKS))
def test_ground_truth_scores_one_and_a_wrong_answer_does_not(task, level):
    from trainer.rewards import compute_reward

    for sample in _samples(task, level):
        reward_model = sample.row["reward_model"]
        if reward_model["verifier"] == "detection":
            # step 9 of 10: the dynamic IoU threshold is at its strictest, 0.99.
            # the ground truth on the 0-1000 scale: normalising by a 1000 x 1000 image is the identity
            right = compute_reward(
                _wrap(reward_model["answer"]), reward_model, step=9, total_steps=10, image_size=(1000, 1000)
            )
            # the drawn boxes in pixels of the image, as a model that sees it answers
            pixels = compute_reward(
                _wrap(_pixel_answer(sample.boxes_px)),
                reward_model,
                step=9,
                total_steps=10,
                image_size=sample.image_size,
            )
            shifted = [
                (label, (x1 + 40, y1 + 40, x2 + 40, y2 + 40)) for label, (x1, y1, x2, y2) in sample.boxes_px
            ]
            wrong = compute_reward(
                _wrap(_pixel_answer(shifted)),
                reward_model,
                step=9,
                total_steps=10,
                image_size=sample.image_size,
            )
            assert pixels["accuracy_reward"] == pytest.approx(1.0, abs=1e-9)
            assert pixels["final_reward"] == pytest.approx(1.0, abs=1e-9)
        else:
            right = compute_reward(_wrap(reward_model["ground_truth"]), reward_model)
            answer = reward_model["answer"]
            wrong_answer = str(int(answer) + 1) if answer.isdigit() else "\\text{zebra}"
            wrong = compute_reward(_wrap(f"\\boxed{{{wrong_answer}}}"), reward_model)
        # abs=1e-9: (1 - 0.3) * iou + 0.3 * completeness may round in the last bit
        assert right["accuracy_reward"] == pytest.approx(1.0, abs=1e-9), (reward_model, right)
        assert right["format_reward"] == 1.0
        assert right["final_reward"] == pytest.approx(1.0, abs=1e-9)
        assert wrong["accuracy_reward"] < 1.0, (reward_model, wrong)
        assert wrong["final_reward"] < 1.0


def test_ocr_words_are_told_apart_by_mathverify():
    from trainer.rewards import compute_reward

    words = sorted({w for level in OCR_WORDS.values() for w in level})
    assert len(words) == sum(len(level) for level in OCR_WORDS.values())
    for word in words:
        reward_model = {"ground_truth": f"\\boxed{{\\text{{{word}}}}}", "verifier": "mathverify"}
        assert compute_reward(_wrap(f"\\boxed{{\\text{{{word}}}}}"), reward_model)["accuracy_reward"] == 1.0
        # an anagram would match a bare \boxed{word} (parsed as a product of symbols); \text{} prevents it
        anagram = word[::-1]
        if anagram != word:
            assert compute_reward(_wrap(f"\\boxed{{{anagram}}}"), reward_model)["accuracy_reward"] == 0.0
        other = words[(words.index(word) + 1) % len(words)]
        assert compute_reward(_wrap(f"\\boxed{{\\text{{{other}}}}}"), reward_model)["accuracy_reward"] == 0.0


@pytest.mark.parametrize("task", ["detection", "grounding"])
def test_boxes_are_valid_on_the_0_1000_scale(task):
    for level in LEVELS:
        for sample in _samples(task, level):
            answer = sample.row["reward_model"]["answer"]
            boxes = [list(map(int, m)) for m in re.findall(r"\[(\d+), (\d+), (\d+), (\d+)\]", answer)]
            assert len(boxes) == len(sample.boxes_px) >= 1
            for (x1, y1, x2, y2), (_, pixel_box) in zip(boxes, sample.boxes_px, strict=True):
                assert 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000
                assert [x1, y1, x2, y2] == normalize_box(pixel_box, *sample.image_size)
            assert sample.row["reward_model"]["ground_truth"] == f"<answer>\n{answer}\n</answer>"


def test_normalize_box_uses_the_reward_formula():
    # int(x / width * 1000): 33 / 224 * 1000 = 147.32 -> 147; 200 / 224 * 1000 = 892.86 -> 892
    assert normalize_box((33, 0, 200, 224), 224, 224) == [147, 0, 892, 1000]


def test_easy_keeps_answers_small():
    for i in range(40):
        assert int(generate_sample("math", i, difficulty="easy").row["reward_model"]["answer"]) <= 18  # 9 + 9
        assert int(generate_sample("counting", i, difficulty="easy").row["reward_model"]["answer"]) <= 5
        detection = generate_sample("detection", i, difficulty="easy", image_size=112)
        assert len(detection.boxes_px) == 1
        x1, y1, x2, y2 = detection.boxes_px[0][1]
        assert 32 <= x2 - x1 == y2 - y1 <= 48  # 2/7 .. 3/7 of the side: large enough for a tiny model
        assert len(generate_sample("grounding", i, difficulty="easy").boxes_px) == 1


def test_difficulty_changes_the_data():
    easy = [generate_sample("math", i, difficulty="easy").row["reward_model"]["answer"] for i in range(20)]
    hard = [generate_sample("math", i, difficulty="hard").row["reward_model"]["answer"] for i in range(20)]
    assert easy != hard
    assert max(int(a) for a in hard) > 18


def test_image_size_is_honoured():
    sample = generate_sample("chart", 0, image_size=112)
    assert sample.image_size == (112, 112)
    assert validate_sample(sample.row) == []


def test_generate_sample_is_pure():
    first = generate_sample("detection", 5, seed=9, difficulty="medium")
    again = generate_sample("detection", 5, seed=9, difficulty="medium")
    assert first.row == again.row
    assert generate_sample("detection", 5, seed=10, difficulty="medium").row != first.row


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "maths"}, "unknown synthetic task 'maths'; known: "),
        ({"difficulty": "extreme"}, "unknown difficulty 'extreme'; known: easy, medium, hard"),
        ({"image_size": 20}, "image_size must be in [56, 2048], got 20"),
        ({"format_ratio": 2.0}, "format_ratio must be in [0, 1], got 2.0"),
    ],
)
def test_generate_sample_refuses(kwargs, message):
    task = kwargs.pop("task", "math")
    with pytest.raises(ValueError) as info:
        generate_sample(task, 0, **kwargs)
    assert str(info.value).startswith(message)


def test_registry_fails_loudly():
    with pytest.raises(ValueError, match="^synthetic task 'math' is already registered$"):
        register_task("math", ability="math", verifier="mathverify")(lambda rng, level, size: None)
    with pytest.raises(
        ValueError, match="known: math, puzzle, chart, science, ocr, counting, detection, grounding"
    ):
        get_task("nope")
    with pytest.raises(ValueError, match="known: easy, medium, hard"):
        get_difficulty("nope")


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_files_and_manifest(tmp_path):
    manifest = generate_dataset(str(tmp_path), per_source=10, seed=1, test_fraction=0.2)
    names = set(_files(tmp_path))
    assert "manifest.json" in names
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["task_types"] == list(TASKS)
    for source in manifest["sources"]:
        task = source["task_type"]
        # 10 per source, 20 % test: 8 train + 2 test
        assert source["splits"] == {
            "train": {"file": f"train_{task}_synth_{task}_8.parquet", "rows": 8},
            "test": {"file": f"test_{task}_synth_{task}_2.parquet", "rows": 2},
        }
        for split in source["splits"].values():
            rows = list(iter_samples(str(tmp_path / split["file"])))
            assert len(rows) == split["rows"]
            assert {r["data_source"] for r in rows} == {source["data_source"]}
            assert all(validate_sample(r) == [] for r in rows)
    assert len(names) == 1 + 2 * len(TASKS)


def test_rows_read_back_from_parquet_still_score_one(tmp_path):
    # float32 storage turns the ratios into 0.10000000149011612 and 0.30000001192092896
    from trainer.rewards import compute_reward

    generate_dataset(str(tmp_path), tasks=["counting", "detection"], per_source=5, difficulty="medium")
    for name in ("train_counting_synth_counting_4.parquet", "train_detection_synth_detection_4.parquet"):
        for row in iter_samples(str(tmp_path / name)):
            reward_model = row["reward_model"]
            inner = (
                reward_model["answer"]
                if reward_model["verifier"] == "detection"
                else reward_model["ground_truth"]
            )
            rewards = compute_reward(
                _wrap(inner), reward_model, step=9, total_steps=10, image_size=(1000, 1000)
            )
            assert rewards["final_reward"] == pytest.approx(1.0, abs=1e-9)


def test_train_and_test_rows_differ(tmp_path):
    generate_dataset(str(tmp_path), tasks=["math"], per_source=10, seed=1)
    train = list(iter_samples(str(tmp_path / "train_math_synth_math_8.parquet")))
    test = list(iter_samples(str(tmp_path / "test_math_synth_math_2.parquet")))
    assert not {r["extra_info"]["id"] for r in train} & {r["extra_info"]["id"] for r in test}


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate_dataset(str(tmp_path / name), per_source=4, seed=7, difficulty="medium")
    generate_dataset(str(tmp_path / "c"), per_source=4, seed=8, difficulty="medium")
    first = _files(tmp_path / "a")
    assert first == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert first.keys() == other.keys() and first != other


def test_jsonl_dataset(tmp_path):
    manifest = generate_dataset(str(tmp_path), tasks=["ocr", "grounding"], per_source=5, file_format="jsonl")
    assert manifest["images_root"] == "."
    assert (tmp_path / "images" / "synth_ocr" / "000000.png").is_file()
    rows = list(iter_samples(str(tmp_path / "train_ocr_synth_ocr_4.jsonl"), images_root=str(tmp_path)))
    assert len(rows) == 4
    assert all(validate_sample(r) == [] for r in rows)
    plain = next(iter_samples(str(tmp_path / "test_grounding_synth_grounding_1.jsonl")))
    assert plain["images"] == ["images/synth_grounding/000004.png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_source": 0}, "per_source must be at least 1, got 0"),
        ({"test_fraction": 1.0}, "test_fraction must be in [0, 1), got 1.0"),
        ({"file_format": "csv"}, "unknown format 'csv'; known: parquet, jsonl"),
        ({"tasks": ["math", "nope"]}, "unknown synthetic task 'nope'; known: "),
    ],
)
def test_generate_dataset_refuses(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as info:
        generate_dataset(str(tmp_path), **kwargs)
    assert str(info.value).startswith(message)


def test_cli(tmp_path, capsys):
    code = main(
        ["synth", "--out", str(tmp_path), "--per-source", "3", "--seed", "2", "--tasks", "math,counting"]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    # 3 per source, 20 % test: round(0.6) = 1 test row, 2 train rows
    assert out == [
        f"{tmp_path}/train_math_synth_math_2.parquet  (2 rows)",
        f"{tmp_path}/test_math_synth_math_1.parquet  (1 rows)",
        f"{tmp_path}/train_counting_synth_counting_2.parquet  (2 rows)",
        f"{tmp_path}/test_counting_synth_counting_1.parquet  (1 rows)",
        f"{tmp_path}/manifest.json",
    ]


def test_cli_reports_bad_values(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--image-size", "10"]) == 2
    assert capsys.readouterr().err == "synth: image_size must be in [56, 2048], got 10\n"
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--tasks", "math,nope"])
    assert "unknown task(s) nope; known: math" in capsys.readouterr().err
