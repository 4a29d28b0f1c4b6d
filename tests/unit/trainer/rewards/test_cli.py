"""``python -m trainer reward``: a responses file scored against a dataset."""

from __future__ import annotations

import json

import pytest

from trainer.__main__ import main
from trainer.data.reader import write_jsonl, write_parquet

GT_BOX = "<answer>\n[{'bbox_2d': [10, 10, 100, 100], 'label': 'dog'}]\n</answer>"
DET_PARM = {
    "det_verifier_normalized": True,
    "det_reward_ratio": {"iou_max_label_first": 1.0, "iou_completeness": 0.3},
}


def _row(source, verifier, truth, sample_id, **reward_model):
    return {
        "data_source": source,
        "images": [],
        "prompt": [{"role": "user", "content": "<image> question"}],
        "ability": "math" if verifier == "mathverify" else "cv_detection",
        "reward_model": {
            "ground_truth": truth,
            "answer": "",
            "verifier": verifier,
            "accuracy_ratio": 1.0,
            "format_ratio": 0.5,
            **reward_model,
        },  # fmt: skip
        "extra_info": {"id": sample_id},
    }


@pytest.fixture(params=["jsonl", "parquet"])
def dataset(tmp_path, request):
    rows = [_row("mm_math", "mathverify", f"\\boxed{{{i}}}", f"m{i}") for i in range(3)]
    rows.append(_row("grounding", "detection", GT_BOX, "g0", verifier_parm=DET_PARM))
    path = tmp_path / f"data.{request.param}"
    (write_jsonl if request.param == "jsonl" else write_parquet)(rows, str(path))
    return path


def _write_responses(path, entries):
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return path


def test_per_source_means(dataset, tmp_path, capsys):
    responses = _write_responses(
        tmp_path / "responses.jsonl",
        [
            {"id": "m0", "response": "<think>\nx\n</think>\n\\boxed{0}"},  # correct, format 0.5
            {"id": "m1", "response": "\\boxed{9}"},  # wrong, format 0
            {"index": 2, "response": "\\boxed{2}"},  # correct, format 0
            # pixels of a 200×100 image: 2/200·1000 = 10, 1/100·1000 = 10, 20 → 100, 10 → 100
            {
                "id": "g0",
                "response": "x\n<answer>\n[{'bbox_2d': [2, 1, 20, 10], 'label': 'dog'}]\n</answer>",
                "image_size": [200, 100],
            },  # fmt: skip
            {"id": "g0", "response": "x\n<answer>\n[{'bbox_2d': [2, 1, 20, 10], 'label': 'dog'}]\n</answer>"},
        ],
    )
    out = tmp_path / "scores.jsonl"
    argv = ["reward", "--data", str(dataset), "--responses", str(responses), "--workers", "1", "--json",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = json.loads(capsys.readouterr().out)
    math = table["mm_math"]
    assert (math["count"], math["reward_errors"]) == (3, 0)
    assert math["accuracy_reward"] == pytest.approx(2 / 3)
    assert math["format_reward"] == pytest.approx(0.5 / 3)
    # finals: (1 + 0.5·0.5)/1.5, 0, 1/1.5 → mean (0.8333 + 0 + 0.6667) / 3 = 0.5
    assert math["final_reward"] == pytest.approx(0.5)
    grounding = table["grounding"]
    # the second response has no image_size for its normalised boxes: an error, scored 0
    assert (grounding["count"], grounding["reward_errors"]) == (2, 1)
    assert grounding["accuracy_reward"] == pytest.approx(0.5)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["key"] for line in lines] == ["m0", "m1", 2, "g0", "g0"]
    assert (
        lines[4]["error"]
        == "error: ValueError: image_size (width, height) is required when det_verifier_normalized is true"
    )


def test_table_output(dataset, tmp_path, capsys):
    responses = _write_responses(tmp_path / "r.jsonl", [{"index": 0, "response": "\\boxed{0}"}])
    assert main(["reward", "--data", str(dataset), "--responses", str(responses), "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "data_source",
        "count",
        "reward_errors",
        "final_reward",
        "accuracy_reward",
        "format_reward",
    ]
    assert lines[1].split() == ["mm_math", "1", "0", "0.6667", "1.0000", "0.0000"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"id": "nope", "response": "x"}], "line 1: no sample has extra_info.id 'nope'"),
        ([{"index": 99, "response": "x"}], "line 1: 'index' must be an int in [0, 4), got 99"),
        ([{"response": "x"}], "line 1: give the sample as 'id' or 'index'"),
        ([{"id": "m0", "response": 5}], "line 1: 'response' must be a string"),
        ([], "no responses"),
    ],
)
def test_bad_responses_file(dataset, tmp_path, capsys, entries, message):
    responses = _write_responses(tmp_path / "r.jsonl", entries)
    assert main(["reward", "--data", str(dataset), "--responses", str(responses), "--workers", "1"]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_files(tmp_path, capsys):
    (tmp_path / "r.jsonl").write_text("{not json\n")
    (tmp_path / "d.jsonl").write_text("")
    assert (
        main(["reward", "--data", str(tmp_path / "d.jsonl"), "--responses", str(tmp_path / "r.jsonl")]) == 2
    )
    assert "r.jsonl, line 1: not JSON" in capsys.readouterr().err
    assert (
        main(
            ["reward", "--data", str(tmp_path / "missing.parquet"), "--responses", str(tmp_path / "r.jsonl")]
        )
        == 2
    )
