"""Per-sample metric families, against hand-computed values."""

from __future__ import annotations

import pytest

from trainer.monitor import (
    REFLECTION_WORDS,
    SampleRecord,
    by_source,
    count_metrics,
    detection_metrics,
    eval_metrics,
    is_reflective,
    reflection_counts,
    reflection_metrics,
    reflection_word_key,
    response_length_metrics,
    reward_metrics,
    sample_metrics,
)


def rec(
    source: str = "math",
    accuracy: float = 0.0,
    length: int = 10,
    text: str = "",
    *,
    clipped: bool = False,
    error: bool = False,
    verifier: str = "mathverify",
    **extra: float,
) -> SampleRecord:
    rewards = {"accuracy_reward": accuracy, "format_reward": 1.0, "final_reward": (accuracy + 0.1) / 1.1}
    rewards.update({f"{k}_reward": v for k, v in extra.items()})
    return SampleRecord(source, verifier, rewards, text, length, clipped, error)


# Four math responses: two correct (10 and 30 tokens), two wrong (20 and 40 tokens, both clipped).
FOUR = [
    rec(accuracy=1.0, length=10, text="Wait, the answer is 4"),
    rec(accuracy=0.0, length=20, text="no idea", clipped=True),
    rec(accuracy=1.0, length=30, text="Let me VERIFY this"),
    rec(accuracy=0.0, length=40, text="Let me re-check... wait", clipped=True),
]


def only(metrics: dict, source: str | None, prefix: str) -> dict[str, float]:
    return {k: v for (s, k), v in metrics.items() if s == source and k.startswith(prefix)}


def test_response_length_by_correctness() -> None:
    got = only(response_length_metrics(FOUR), "math", "response_length/")
    assert got == pytest.approx(
        {
            "response_length/mean": 25.0,  # (10 + 20 + 30 + 40) / 4
            "response_length/clip_ratio": 0.5,  # 2 clipped of 4
            "response_length/correct_mean": 20.0,  # (10 + 30) / 2
            "response_length/wrong_mean": 30.0,  # (20 + 40) / 2
            "response_length/correct_clip_ratio": 0.0,  # 0 of 2 correct clipped
            "response_length/wrong_clip_ratio": 1.0,  # 2 of 2 wrong clipped
        }
    )


def test_reflection_ratios_and_word_counts() -> None:
    metrics = reflection_metrics(FOUR)
    # reflective: #1 (wait), #3 (verify), #4 (re-check, wait); #2 not. Correct: #1, #3.
    assert only(metrics, "math", "reflection/") == pytest.approx(
        {
            "reflection/ratio": 0.75,  # 3 of 4
            "reflection/ratio_in_correct": 1.0,  # #1 and #3 of the 2 correct
            "reflection/ratio_in_wrong": 0.5,  # #4 of the 2 wrong
            "reflection/correct_in_reflective": 2 / 3,  # #1 and #3 of the 3 reflective
            "reflection/correct_in_non_reflective": 0.0,  # #2 is wrong
        }
    )
    words = only(metrics, "math", "reflection_word/")
    assert words["reflection_word/wait"] == 2.0
    assert words["reflection_word/verify"] == 1.0
    assert words["reflection_word/re-check"] == 1.0
    assert sum(words.values()) == 4.0  # every other word 0
    assert len(words) == len(REFLECTION_WORDS)


@pytest.mark.parametrize("word", REFLECTION_WORDS)
def test_each_reflection_word_is_found_alone(word: str) -> None:
    text = f"First try. {word.upper()}: the answer is 4."
    assert is_reflective(text)
    assert reflection_counts(text) == {w: int(w == word) for w in REFLECTION_WORDS}
    metrics = reflection_metrics([rec(text=text)])
    assert metrics[("math", reflection_word_key(word))] == 1.0
    assert metrics[("math", "reflection/ratio")] == 1.0


@pytest.mark.parametrize(
    ("text", "reflective", "counts"),
    [
        ("The answer is 4.", False, {}),
        ("", False, {}),
        ("awaiting the result", True, {"wait": 1}),  # substring, as V-Triune counts
        ("a Yeti appeared", True, {"yet": 1}),
        ("WAIT wait Wait", True, {"wait": 3}),
        ("re-think and rethink", True, {"re-think": 1, "rethink": 1}),
        ("recheck again", True, {"recheck": 1, "check again": 1}),  # substrings may overlap
        ("let me check again, then think again", True, {"check again": 1, "think again": 1}),
        ("reevaluation", True, {"reevaluation": 1}),  # not "reevaluate"
        ("re\u2010check", False, {}),  # a Unicode hyphen is not '-'
    ],
)
def test_reflection_substring_rules(text: str, reflective: bool, counts: dict[str, int]) -> None:
    assert is_reflective(text) is reflective
    assert {w: c for w, c in reflection_counts(text).items() if c} == counts


def test_reflection_word_keys_replace_spaces() -> None:
    assert reflection_word_key("check again") == "reflection_word/check_again"
    assert reflection_word_key("re-check") == "reflection_word/re-check"


def test_undefined_metrics_are_omitted_not_nan() -> None:
    all_correct = [rec(accuracy=1.0, length=5, text="wait"), rec(accuracy=1.0, length=7, text="wait")]
    metrics = {**response_length_metrics(all_correct), **reflection_metrics(all_correct)}
    keys = {k for s, k in metrics if s == "math"}
    assert "response_length/correct_mean" in keys
    for missing in (
        "response_length/wrong_mean",
        "response_length/wrong_clip_ratio",
        "reflection/ratio_in_wrong",
        "reflection/correct_in_non_reflective",  # every response is reflective
    ):
        assert missing not in keys
    none_correct = [rec(accuracy=0.0, text="plain")]
    keys = {k for _, k in {**response_length_metrics(none_correct), **reflection_metrics(none_correct)}}
    for missing in (
        "response_length/correct_mean",
        "reflection/ratio_in_correct",
        "reflection/correct_in_reflective",
    ):
        assert missing not in keys
    assert all(v == v for v in sample_metrics(all_correct + none_correct).values())  # no NaN anywhere


def test_empty_batch_gives_no_metrics() -> None:
    assert sample_metrics([]) == {}
    assert eval_metrics([]) == {}


def test_counts_per_source_and_for_the_whole_step() -> None:
    records = [rec("math"), rec("math", error=True), rec("ocr"), rec("det", error=True), rec("math")]
    assert count_metrics(records) == {
        ("math", "count"): 3.0,
        ("math", "reward_errors"): 1.0,
        ("ocr", "count"): 1.0,
        ("ocr", "reward_errors"): 0.0,
        ("det", "count"): 1.0,
        ("det", "reward_errors"): 1.0,
        (None, "count"): 5.0,
        (None, "reward_errors"): 2.0,
    }


def test_reward_means_per_source_and_global() -> None:
    records = [
        rec("math", accuracy=1.0),
        rec("math", accuracy=0.0),
        rec("det", accuracy=0.5, verifier="detection", iou_max_label_first=0.5),
    ]
    metrics = reward_metrics(records)
    assert metrics[("math", "reward/accuracy")] == pytest.approx(0.5)  # (1 + 0) / 2
    assert metrics[(None, "reward/accuracy")] == pytest.approx(0.5)  # (1 + 0 + 0.5) / 3
    assert metrics[("math", "reward/final")] == pytest.approx((1.1 / 1.1 + 0.1 / 1.1) / 2)
    assert metrics[("det", "reward/iou_max_label_first")] == 0.5
    # only the detection response carries it, so the global mean is over that one response
    assert metrics[(None, "reward/iou_max_label_first")] == 0.5
    assert ("math", "reward/iou_max_label_first") not in metrics


def det(iou: float, precision: float, recall: float, map_: float, map50: float) -> SampleRecord:
    return rec(
        "det",
        verifier="detection",
        report_iou_50_label_match_pure=iou,
        report_iou_50_label_match_precision=precision,
        report_iou_50_label_match_recall=recall,
        report_iou_50_iou_match_pure=0.9,  # IoU-first reports stay under reward/
        pure_map_score=map_,
        pure_map50_score=map50,
    )


def test_detection_metrics_come_from_the_detection_keys_only() -> None:
    records = [det(0.8, 1.0, 0.5, 0.4, 0.6), det(0.4, 0.5, 0.5, 0.2, 0.2), rec("math")]
    metrics = detection_metrics(records)
    assert only(metrics, "det", "detection/") == pytest.approx(
        {
            "detection/iou@50": 0.6,  # (0.8 + 0.4) / 2
            "detection/precision@50": 0.75,  # (1.0 + 0.5) / 2
            "detection/recall@50": 0.5,
            "detection/map": pytest.approx(0.3),  # (0.4 + 0.2) / 2
            "detection/map50": 0.4,  # (0.6 + 0.2) / 2
        }
    )
    assert only(metrics, "math", "detection/") == {}
    assert only(metrics, None, "detection/")["detection/iou@50"] == pytest.approx(0.6)
    # reported under detection/ only, not duplicated under reward/
    rewards = {k for _, k in reward_metrics(records)}
    assert not rewards & {"reward/report_iou_50_label_match_pure", "reward/pure_map_score"}
    assert "reward/report_iou_50_iou_match_pure" in rewards


def test_sample_metrics_is_the_union_of_the_families() -> None:
    records = FOUR + [det(0.5, 0.5, 0.5, 0.5, 0.5)]
    union = {
        **count_metrics(records),
        **reward_metrics(records),
        **response_length_metrics(records),
        **reflection_metrics(records),
        **detection_metrics(records),
    }
    assert sample_metrics(records) == union


def test_eval_metrics_prefix_every_reward_component() -> None:
    records = [
        rec("math", accuracy=1.0),
        rec("math", accuracy=0.0),
        det(0.3, 1.0, 1.0, 0.1, 0.1),
    ]
    metrics = eval_metrics(records)
    assert metrics[("math", "eval/accuracy")] == 0.5  # (1 + 0) / 2
    assert metrics[("math", "eval/count")] == 2.0
    assert metrics[("det", "eval/report_iou_50_label_match_pure")] == 0.3
    assert metrics[(None, "eval/count")] == 3.0
    assert all(k.startswith("eval/") for _, k in metrics)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_source": ""}, "data_source must be a non-empty string, got ''"),
        ({"response_length": -1}, "response_length must be >= 0, got -1"),
        ({"response_length": True}, "response_length must be an integer, got True"),
        ({"response_length": 1.5}, "response_length must be an integer, got 1.5"),
        ({"rewards": {"accuracy": 1.0}}, "reward keys must end in '_reward', got 'accuracy'"),
        ({"rewards": {"_reward": 1.0}}, "reward keys must end in '_reward', got '_reward'"),
    ],
)
def test_bad_records_are_refused(kwargs: dict, message: str) -> None:
    fields = {
        "data_source": "math",
        "verifier": "mathverify",
        "rewards": {"accuracy_reward": 1.0},
        "response_text": "",
        "response_length": 3,
        "clipped": False,
    } | kwargs
    with pytest.raises(ValueError) as info:
        SampleRecord(**fields)
    assert str(info.value) == message


def test_hostile_texts_and_sources() -> None:
    huge = "wait " * 200_000 + "\x00\udcff"  # 1 MB of reflection, a NUL and a lone surrogate
    source = "s" * 10_000
    metrics = reflection_metrics([rec(source, text=huge)])
    assert metrics[(source, "reflection_word/wait")] == 200_000.0
    assert metrics[(source, "reflection/ratio")] == 1.0


def test_by_source_keeps_first_occurrence_order_and_adds_the_whole_step() -> None:
    records = [rec("b"), rec("a"), rec("b")]
    groups = by_source(records)
    assert list(groups) == ["b", "a", None]
    assert groups["b"] == [records[0], records[2]]
    assert groups[None] == records
    assert by_source([]) == {}
