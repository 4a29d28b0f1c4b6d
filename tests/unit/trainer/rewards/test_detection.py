"""The detection verifier: hand-computed rewards and equality with V-Triune's formulas."""

from __future__ import annotations

import random

import pytest

from trainer.rewards import (
    DETECTION_KEYS,
    DETECTION_METRIC_KEYS,
    RewardModelError,
    compute_reward,
    validate_reward_model,
)

from . import reference

LABEL_FIRST = {"iou_max_label_first": 1.0, "iou_max_iou_first": 0.0, "iou_completeness": 0.3, "map": 0.0,
               "map50": 0.0, "map75": 0.0}  # fmt: skip


def answer(boxes) -> str:
    return (
        "<think>\nlooking\n</think>\n<answer>\n"
        + str([{"bbox_2d": b, "label": label} for b, label in boxes])
        + "\n</answer>"
    )


def model(gt_boxes, ratios=LABEL_FIRST, normalized=False, **extra):
    return {
        "verifier": "detection",
        "ground_truth": "<answer>\n"
        + str([{"bbox_2d": b, "label": label} for b, label in gt_boxes])
        + "\n</answer>",
        "verifier_parm": {"det_verifier_normalized": normalized, "det_reward_ratio": ratios},
        **extra,
    }


DOG = ([100, 100, 200, 200], "dog")


def test_keys():
    rewards = compute_reward(answer([DOG]), model([DOG]))
    assert list(rewards) == ["accuracy_reward", "format_reward", "final_reward", *DETECTION_KEYS]
    assert all(key.endswith("_reward") for key in rewards)
    assert set(DETECTION_METRIC_KEYS) <= set(rewards)
    assert DETECTION_METRIC_KEYS["report_iou_50_label_match_pure_reward"] == "detection/iou@50"


def test_single_exact_box():
    rewards = compute_reward(answer([DOG]), model([DOG]))
    # IoU 1 ≥ 0.85: mean 1, completeness 1 → 0.7·1 + 0.3·1 = 1; penalty 0.6^0 = 1
    assert rewards["accuracy_reward"] == 1.0
    assert rewards["format_reward"] == 1.0
    assert rewards["final_reward"] == pytest.approx(1.0)  # (1·1 + 0.1·1) / 1.1
    assert rewards["size_penalty_reward"] == 1.0
    assert rewards["pure_map_score_reward"] == pytest.approx(1.0)


def test_single_box_below_the_threshold():
    # IoU 0.8 (100·80 / 100·100) < ε = 0.85 at step 0: no match.
    # mean 0, miss 1, false alarm 1 → completeness 0 → accuracy 0
    rewards = compute_reward(answer([([100, 100, 200, 180], "dog")]), model([DOG]))
    assert rewards["accuracy_reward"] == 0.0
    # the logged IoU@50: matched at 0.5 → mean IoU 0.8, precision 1, recall 1
    assert rewards["report_iou_50_label_match_pure_reward"] == pytest.approx(0.8)
    assert rewards["report_iou_50_label_match_precision_reward"] == 1.0
    assert rewards["report_iou_95_label_match_recall_reward"] == 0.0
    # final = (1·0 + 0.1·1) / 1.1
    assert rewards["final_reward"] == pytest.approx(0.1 / 1.1)


def test_multi_box_with_a_miss_and_a_false_alarm():
    gt = [DOG, ([300, 300, 400, 400], "cat"), ([500, 500, 600, 600], "dog")]
    pred = [DOG, ([300, 300, 400, 400], "cat"), ([700, 700, 800, 800], "dog")]
    rewards = compute_reward(answer(pred), model(gt))
    # P = G = 3, M = 2 (IoU 1 each): mean 2/3, miss 1/3, false alarm 1/3 → completeness 2/3
    # 0.7·2/3 + 0.3·2/3 = 2/3; penalty 1
    assert rewards["accuracy_reward"] == pytest.approx(2 / 3)
    assert rewards["report_iou_99_label_match_precision_reward"] == pytest.approx(2 / 3)


def test_size_penalty_for_extra_boxes():
    pred = [DOG, ([300, 300, 400, 400], "dog"), ([500, 500, 600, 600], "dog")]
    rewards = compute_reward(answer(pred), model([DOG]))
    # P = 3, G = 1, M = 1: mean 1, miss 0, false alarm 2/3 → completeness 2/3
    # S = 0.7 + 0.3·2/3 = 0.9; penalty 0.6² = 0.36 → 0.324
    assert rewards["size_penalty_reward"] == pytest.approx(0.36)
    assert rewards["pure_iou_score_max_label_reward"] == pytest.approx(0.9)
    assert rewards["accuracy_reward"] == pytest.approx(0.324)


def test_duplicate_boxes_are_dropped_before_scoring():
    rewards = compute_reward(answer([DOG, DOG, DOG]), model([DOG]))
    assert rewards["size_penalty_reward"] == 1.0  # one box left: P = G = 1
    assert rewards["accuracy_reward"] == 1.0


def test_label_mismatch():
    rewards = compute_reward(answer([([100, 100, 200, 200], "cat")]), model([DOG]))
    assert rewards["accuracy_reward"] == 0.0  # label first: no candidate, completeness 0
    # IoU first matches the pair and counts IoU 0: mean 0, completeness 1 → 0.3
    assert rewards["pure_iou_score_max_iou_reward"] == pytest.approx(0.3)
    assert rewards["report_iou_50_iou_match_recall_reward"] == 1.0
    assert rewards["pure_map_score_reward"] == 0.0  # "cat" is not a ground-truth label


def test_labels_compare_case_insensitively():
    assert compute_reward(answer([([100, 100, 200, 200], "DOG")]), model([DOG]))["accuracy_reward"] == 1.0


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # IoU 0.9 = 100·90 / 100·100: a match at ε = 0.85 only.
        (10, 0.7 * 0.9 + 0.3),  # 10/100 = 10 % → 0.85: mean 0.9, completeness 1
        (11, 0.0),  # 0.95: no match, completeness 0
        (25, 0.0),
        (26, 0.0),
    ],
)
def test_dynamic_schedule_boundaries(step, expected):
    rewards = compute_reward(
        answer([([100, 100, 200, 190], "dog")]), model([DOG]), step=step, total_steps=100
    )
    assert rewards["accuracy_reward"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # IoU 0.96 = 100·96 / 100·100: matches at 0.85 and 0.95, not at 0.99
        (25, 0.7 * 0.96 + 0.3),  # exactly 25 % → 0.95
        (26, 0.0),  # → 0.99
    ],
)
def test_second_boundary(step, expected):
    rewards = compute_reward(
        answer([([100, 100, 200, 196], "dog")]), model([DOG]), step=step, total_steps=100
    )
    assert rewards["accuracy_reward"] == pytest.approx(expected)


def test_fixed_and_average_schedules():
    response = answer([([100, 100, 200, 190], "dog")])  # IoU 0.9
    assert compute_reward(response, model([DOG]), iou_schedule=0.5)["accuracy_reward"] == pytest.approx(0.93)
    # average over 11 thresholds: matched (S = 0.93) at 0.5 … 0.9 (9 of them), 0 at 0.95 and 0.99
    average = compute_reward(response, model([DOG]), iou_schedule="average")["accuracy_reward"]
    assert average == pytest.approx(9 * 0.93 / 11)
    steps = [[0.5, 0.5], [1.0, 0.99]]
    assert compute_reward(response, model([DOG]), step=40, total_steps=100, iou_schedule=steps)[
        "accuracy_reward"
    ] == pytest.approx(0.93)
    assert (
        compute_reward(response, model([DOG]), step=60, total_steps=100, iou_schedule=steps)[
            "accuracy_reward"
        ]
        == 0
    )


def test_ratio_weighting_with_map():
    ratios = {"iou_max_label_first": 1.0, "iou_completeness": 0.0, "map": 1.0}
    rewards = compute_reward(answer([([100, 100, 200, 180], "dog")]), model([DOG], ratios), iou_schedule=0.5)
    # label first at 0.5, w_c = 0: mean IoU 0.8; mAP: TP for 0.50 … 0.80 → 0.7
    # accuracy (1·0.8 + 1·0.7) / 2 = 0.75
    assert rewards["pure_map_score_reward"] == pytest.approx(0.7)
    assert rewards["accuracy_reward"] == pytest.approx(0.75)


def test_normalisation_on_and_off():
    # predicted in pixels of a 500×400 image: 50/500·1000 = 100, 40/400·1000 = 100, ...
    pixels = answer([([50, 40, 100, 80], "dog")])
    on = compute_reward(pixels, model([DOG], normalized=True), image_size=(500, 400))
    assert on["accuracy_reward"] == 1.0
    off = compute_reward(pixels, model([DOG], normalized=False), image_size=(500, 400))
    assert off["accuracy_reward"] == 0.0
    with pytest.raises(ValueError, match="image_size"):
        compute_reward(pixels, model([DOG], normalized=True))


@pytest.mark.parametrize(
    ("response", "fmt"),
    [
        ("<think>\nx\n</think>\n<answer>\n[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]\n</answer>", 1.0),
        ("<answer>\n[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]\n</answer>", 0.0),  # no "\n" before <answer>
        ("x\n<answer>\n[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]\n</answer>\n</answer>", 0.0),  # two closing
        ("x\n<answer>\n[]\n</answer>", 0.0),  # no valid box
        ("x\n<answer>\n[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]", 0.0),  # unclosed
    ],
)
def test_format(response, fmt):
    assert compute_reward(response, model([DOG]))["format_reward"] == fmt


@pytest.mark.parametrize(
    "response",
    [
        "",
        "x" * 1_000_000,
        "\x00\x01\xfe binary \udcff junk",
        "<answer>\n<answer>\n<answer>\n",
        "\n<answer>\n[{'bbox_2d': [NaN, 1, 2, 3], 'label': 'dog'}]\n</answer>",
        "\n<answer>\n[{'bbox_2d': [0, 0, Infinity, 3], 'label': 'dog'}]\n</answer>",
        "\n<answer>\n[{'bbox_2d': [5, 5, 1, 1], 'label': 'dog'}]\n</answer>",
        "\n<answer>\n[{'bbox_2d': [1, 2, 3, 4], 'label': 5}]\n</answer>",
    ],
)
def test_bad_responses_score_zero(response):
    rewards = compute_reward(response, model([DOG]))
    assert rewards["accuracy_reward"] == 0.0
    assert all(value == 0.0 for key, value in rewards.items() if key != "final_reward")


def test_huge_negative_and_many_boxes_give_defined_rewards():
    huge = compute_reward(answer([([-1e300, -1e300, 1e300, 1e300], "dog")]), model([DOG]))
    assert huge["accuracy_reward"] == 0.0  # IoU ≈ 0
    many = compute_reward(answer([([i, i, i + 100, i + 100], "dog") for i in range(10_000)]), model([DOG]))
    assert many["size_penalty_reward"] == 0.0  # 0.6^9999 underflows
    assert many["accuracy_reward"] == 0.0
    assert 0.0 < many["pure_iou_score_max_label_reward"] <= 1.0


def test_ground_truth_without_boxes_is_an_error():
    bad = dict(model([DOG]), ground_truth="<answer>\nnothing\n</answer>")
    with pytest.raises(RewardModelError) as info:
        compute_reward(answer([DOG]), bad)
    assert info.value.field == "reward_model.ground_truth"


def _random_case(rng: random.Random):
    labels = ["dog", "cat", "car"][: rng.randint(1, 3)]
    gt = []
    for _ in range(rng.randint(1, 5)):
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        gt.append(([x, y, x + rng.randint(10, 150), y + rng.randint(10, 150)], rng.choice(labels)))
    pred = []
    for box, label in gt:
        if rng.random() < 0.8:
            b = [c + rng.randint(-10, 10) for c in box]
            b = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
            pred.append((b, label if rng.random() < 0.85 else rng.choice(labels)))
    for _ in range(rng.choice([0, 0, 1, 3])):
        x, y = rng.randint(0, 900), rng.randint(0, 900)
        pred.append(([x, y, x + rng.randint(0, 99), y + rng.randint(0, 99)], rng.choice(labels)))
    ratios = {key: rng.choice([0.0, 0.0, 0.5, 1.0]) for key in reference.RATIO_KEYS}
    ratios["iou_max_label_first"] = 1.0
    return pred, gt, ratios


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_the_reference_formulas(seed):
    rng = random.Random(seed)
    for _ in range(150):
        pred, gt, ratios = _random_case(rng)
        step = rng.randint(0, 100)
        response = answer(pred)
        ours = compute_reward(response, model(gt, ratios), step=step, total_steps=100)
        theirs = reference.detection_accuracy(
            response, model(gt)["ground_truth"], ratios, reference.dynamic_iou(step, 100)
        )
        assert ours["accuracy_reward"] == theirs["final_score"]
        for key in DETECTION_KEYS:
            assert ours[key] == theirs[key.removesuffix("_reward")], key
        assert ours["format_reward"] == reference.detection_format(response)


def test_equal_to_the_reference_when_normalised():
    rng = random.Random(7)
    for _ in range(100):
        pred, gt, ratios = _random_case(rng)
        size = (rng.randint(200, 1500), rng.randint(200, 1500))
        pixels = [([round(c * size[i % 2] / 1000) for i, c in enumerate(b)], label) for b, label in pred]
        response = answer(pixels)
        ours = compute_reward(
            response, model(gt, ratios, normalized=True), image_size=size, iou_schedule="average"
        )
        theirs = reference.detection_accuracy(response, model(gt)["ground_truth"], ratios, "average", size)
        assert ours["accuracy_reward"] == theirs["final_score"]
        for key in DETECTION_KEYS:
            assert ours[key] == theirs[key.removesuffix("_reward")], key


@pytest.mark.parametrize("schedule", ["dynamic", "average", 0.3, 0.97])
def test_plain_python_and_numpy_paths_agree_bit_for_bit(monkeypatch, schedule):
    from trainer.rewards import detection

    rng = random.Random(11)
    cases = []
    for _ in range(120):
        pred, gt, ratios = _random_case(rng)
        ratios["map"] = 0.5
        cases.append((answer(pred), model(gt, ratios), rng.randint(0, 100)))
    small = [compute_reward(r, m, step=s, total_steps=100, iou_schedule=schedule) for r, m, s in cases]
    monkeypatch.setattr(detection, "SMALL_PAIRS", 0)  # every case through the (P, G) numpy arrays
    large = [compute_reward(r, m, step=s, total_steps=100, iou_schedule=schedule) for r, m, s in cases]
    assert small == large
    assert any(r["pure_map_score_reward"] not in (0.0, 1.0) for r in small)  # the cases are not trivial


def test_detection_params_are_cached_by_content_and_type():
    from trainer.rewards import detection

    ratios = dict(LABEL_FIRST)
    assert compute_reward(answer([DOG]), model([DOG], ratios))["accuracy_reward"] == 1.0
    # the same content with True for 1.0 is refused, though True == 1.0 and hash(True) == hash(1.0)
    with pytest.raises(RewardModelError, match="iou_max_label_first must be a number in"):
        compute_reward(answer([DOG]), model([DOG], {**ratios, "iou_max_label_first": True}))
    # a ratio dict changed in place is read again
    ratios["iou_max_label_first"] = 0.0  # every weight 0: uploads refuse it, scoring gives accuracy 0
    with pytest.raises(RewardModelError, match="positive weight"):
        validate_reward_model(model([DOG], ratios))
    assert compute_reward(answer([DOG]), model([DOG], ratios))["accuracy_reward"] == 0.0
    # unhashable values are checked without the cache
    with pytest.raises(RewardModelError, match=r"map must be a number in \[0, 1\], got \[1\]"):
        compute_reward(answer([DOG]), model([DOG], {**LABEL_FIRST, "map": [1]}))
    with pytest.raises(RewardModelError, match="det_verifier_normalized must be true or false, got 1"):
        compute_reward(answer([DOG]), model([DOG], normalized=1))
    params = detection.detection_params({}, {"det_reward_ratio": {"iou_max_label_first": 1}})
    with pytest.raises(TypeError):
        params.ratios["map"] = 1.0  # shared between calls: read-only


def test_iou_ties_are_broken_in_prediction_order_as_the_reference():
    # both predictions cover half of the ground truth: IoU 50 / 100 = 0.5 each; IoU-first takes
    # the first one (label "b", counted as IoU 0), label-first the one labelled "a"
    gt = [([0, 0, 10, 10], "a")]
    pred = [([0, 0, 10, 5], "b"), ([0, 5, 10, 10], "a")]
    ratios = {**LABEL_FIRST, "iou_max_iou_first": 1.0}
    ours = compute_reward(answer(pred), model(gt, ratios), iou_schedule=0.5)
    theirs = reference.detection_accuracy(answer(pred), model(gt)["ground_truth"], ratios, 0.5)
    assert ours["pure_iou_score_max_iou_reward"] == pytest.approx(
        0.3 * (1 - (0 + 1 / 2) / 2)
    )  # 0.7·0 + 0.3·0.75
    assert ours["pure_iou_score_max_label_reward"] == pytest.approx(0.7 * 0.5 + 0.3 * 0.75)
    for key in DETECTION_KEYS:
        assert ours[key] == theirs[key.removesuffix("_reward")], key
