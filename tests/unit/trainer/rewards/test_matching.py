"""IoU and the label-first / IoU-first greedy matchings, by hand and against plain loops."""

from __future__ import annotations

import random

import numpy as np
import pytest

from trainer.rewards.matching import (
    greedy_pairs,
    iou_first_sums,
    label_first_sums,
    match_scores,
    pairwise_iou,
)

from . import reference

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # overlap 5·10 = 50, union 100 + 100 − 50
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),  # touching corners
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # inside: 2·2 / 100
        ([0, 0, 0, 10], [0, 0, 10, 10], 0.0),  # zero width
        ([0.5, 0.5, 1.5, 1.5], [1, 1, 2, 2], 0.25 / 1.75),  # 0.5·0.5 / (1 + 1 − 0.25)
    ],
)
def test_pairwise_iou_by_hand(a, b, expected):
    assert pairwise_iou(np.array([a], float), np.array([b], float))[0, 0] == pytest.approx(expected)


def test_pairwise_iou_equals_the_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pred = (
            np.sort(rng.uniform(0, 100, size=(6, 2, 2)), axis=1)
            .transpose(0, 2, 1)
            .reshape(6, 4)[:, [0, 2, 1, 3]]
        )
        gt = (
            np.sort(rng.integers(0, 100, size=(4, 2, 2)), axis=1)
            .transpose(0, 2, 1)
            .reshape(4, 4)[:, [0, 2, 1, 3]]
        )
        ours = pairwise_iou(pred, gt.astype(float))
        for i in range(len(pred)):
            for j in range(len(gt)):
                assert ours[i, j] == reference.compute_iou(pred[i].tolist(), gt[j].tolist())


def _as_boxes(boxes):
    return [{"bbox_2d": b, "label": label} for b, label in boxes]


def _run(pred, gt, thresholds=THRESHOLDS, vectorized=None):
    iou = pairwise_iou(np.array([b for b, _ in pred], float), np.array([b for b, _ in gt], float))
    same = np.array([[p == g for _, g in gt] for _, p in pred]).reshape(len(pred), len(gt))
    return (
        label_first_sums(iou, same, thresholds, vectorized=vectorized),
        iou_first_sums(iou, same, thresholds),
    )


def test_single_box_hand_computed():
    # IoU 50 / 150 = 1/3 for the pair: a match at ε ≤ 1/3 only
    (label_sums, label_counts), (iou_sums, iou_counts) = _run(
        [([5, 0, 15, 10], "a")], [([0, 0, 10, 10], "a")], (0.3, 0.5)
    )
    assert label_counts == [1, 0]
    assert label_sums == pytest.approx([1 / 3, 0.0])
    assert (iou_sums, iou_counts) == (label_sums, label_counts)


def test_label_mismatch():
    pred, gt = [([0, 0, 10, 10], "cat")], [([0, 0, 10, 10], "dog")]
    (label_sums, label_counts), (iou_sums, iou_counts) = _run(pred, gt, (0.5,))
    assert (label_sums, label_counts) == ([0.0], [0])  # label first: no candidate
    assert (iou_sums, iou_counts) == ([0.0], [1])  # IoU first: matched, IoU counted as 0


def test_duplicate_predictions_match_once():
    # two identical predictions of one ground truth: one match, the other a false alarm
    pred = [([0, 0, 10, 10], "a"), ([0, 0, 10, 10], "a")]
    (label_sums, label_counts), (iou_sums, iou_counts) = _run(pred, [([0, 0, 10, 10], "a")], (0.5,))
    assert label_counts == iou_counts == [1]
    assert label_sums == iou_sums == [1.0]
    scores = match_scores((0.5,), label_sums, label_counts, 2, 1, 0.3)
    # mean 1/1, miss 0, false alarm 1/2: completeness 1 − 0.25 = 0.75; 0.7·1 + 0.3·0.75
    assert scores.weighted == pytest.approx((0.925,))
    assert scores.precision == (0.5,)
    assert scores.recall == (1.0,)


def test_label_first_prefers_the_earliest_on_ties():
    pred = [([0, 0, 10, 10], "a"), ([0, 0, 10, 10.0], "a")]
    iou = pairwise_iou(np.array([b for b, _ in pred], float), np.array([[0, 0, 10, 10.0]]))
    sums, counts = label_first_sums(iou, np.array([[True], [True]]), (0.5,))
    assert counts == [1]


def test_iou_first_takes_the_best_pair_not_the_last_scanned():
    # ground truth g0 = [0,0,10,10]; p0 overlaps it at 0.6, p1 exactly.
    # V-Triune's released loop would record (p1, g1) — the last pair it scanned — with IoU 1.0;
    # the best pair is (p1, g0); then p0 has no partner above 0.5.
    pred = [([0, 0, 10, 6], "a"), ([0, 0, 10, 10], "a")]
    gt = [([0, 0, 10, 10], "a"), ([50, 50, 60, 60], "a")]
    iou = pairwise_iou(np.array([b for b, _ in pred], float), np.array([b for b, _ in gt], float))
    preds, gts, values = greedy_pairs(iou, 0.5)
    assert (preds, gts, values) == ([1], [0], [1.0])


def test_matching_at_several_thresholds_is_a_prefix():
    # pairs at IoU 1.0, 0.8 and 0.6 (10·h / 100 for h = 10, 8, 6)
    pred = [([0, 0, 10, 10], "a"), ([20, 0, 30, 8], "a"), ([40, 0, 50, 6], "b")]
    gt = [([0, 0, 10, 10], "a"), ([20, 0, 30, 10], "a"), ([40, 0, 50, 10], "a")]
    (label_sums, label_counts), (iou_sums, iou_counts) = _run(pred, gt, (0.5, 0.7, 0.9))
    assert iou_counts == [3, 2, 1]
    assert iou_sums == pytest.approx([1.8, 1.8, 1.0])  # the "b" pair counts IoU 0
    assert label_counts == [2, 2, 1]
    assert label_sums == pytest.approx([1.8, 1.8, 1.0])


def _random_case(rng: random.Random):
    labels = ["a", "b", "c"][: rng.randint(1, 3)]
    gt = []
    for _ in range(rng.randint(1, 6)):
        x, y = rng.randint(0, 80), rng.randint(0, 80)
        gt.append(([x, y, x + rng.randint(1, 30), y + rng.randint(1, 30)], rng.choice(labels)))
    pred = []
    for _ in range(rng.randint(0, 9) if rng.random() < 0.8 else rng.randint(12, 25)):  # > 64 pairs too
        if gt and rng.random() < 0.7:
            box, label = rng.choice(gt)
            box = [c + rng.randint(-3, 3) for c in box]
            box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
            pred.append((box, label if rng.random() < 0.8 else rng.choice(labels)))
        else:
            x, y = rng.randint(0, 80), rng.randint(0, 80)
            pred.append(([x, y, x + rng.randint(0, 30), y + rng.randint(0, 30)], rng.choice(labels)))
    return pred, gt


@pytest.mark.parametrize("seed", range(5))
def test_both_matchings_equal_the_reference_loops(seed):
    rng = random.Random(seed)
    for _ in range(200):
        pred, gt = _random_case(rng)
        if not pred:
            continue
        for vectorized in (False, True):
            (label_sums, label_counts), (iou_sums, iou_counts) = _run(pred, gt, vectorized=vectorized)
            for n, t in enumerate(THRESHOLDS):
                theirs = reference.greedy_match_label_first(_as_boxes(pred), _as_boxes(gt), t)
                assert label_counts[n] == len(theirs)
                assert label_sums[n] == sum(m["iou"] for m in theirs)
                theirs = reference.greedy_match_iou_first(_as_boxes(pred), _as_boxes(gt), t)
                assert iou_counts[n] == len(theirs)
                assert iou_sums[n] == sum(m["iou"] for m in theirs)


def test_match_scores_by_hand():
    # P = 3, G = 2, M = 1 with IoU 0.8, w_c = 0.3:
    # mean 0.8/2 = 0.4, miss 1/2, false alarm 2/3, completeness 1 − (0.5 + 0.6667)/2 = 0.41667
    # weighted 0.7·0.4 + 0.3·0.41667 = 0.405
    scores = match_scores((0.5,), [0.8], [1], 3, 2, 0.3)
    assert scores.mean_iou == pytest.approx((0.4,))
    assert scores.completeness == pytest.approx((1 - (0.5 + 2 / 3) / 2,))
    assert scores.weighted == pytest.approx((0.405,))
    assert scores.precision == pytest.approx((1 / 3,))
    assert scores.recall == pytest.approx((0.5,))
    # no prediction: false alarm 0 by definition, miss 1 → completeness 0.5
    assert match_scores((0.5,), [0.0], [0], 0, 2, 0.3).completeness == (0.5,)


def test_iou_pairs_equal_pairwise_iou_bit_for_bit():
    from trainer.rewards.matching import iou_pairs

    rng = np.random.default_rng(3)
    for integral in (True, False):
        for _ in range(40):
            corners = rng.integers(0, 60, size=(9, 2, 2)) if integral else rng.uniform(0, 60, size=(9, 2, 2))
            boxes = np.sort(corners, axis=1).transpose(0, 2, 1).reshape(9, 4)[:, [0, 2, 1, 3]].astype(float)
            pred, gt = boxes[:5], boxes[5:]
            matrix = pairwise_iou(pred, gt)
            expected = [(i, j, matrix[i, j]) for i in range(5) for j in range(4) if matrix[i, j] >= 0.2]
            assert iou_pairs(pred.tolist(), gt.tolist(), 0.2) == expected


def test_iou_pairs_of_degenerate_and_huge_boxes():
    from trainer.rewards.matching import iou_pairs

    # zero-area boxes never overlap; an infinite area gives no pair (IoU 0 or NaN, as pairwise_iou)
    boxes = [(0.0, 0.0, 0.0, 10.0), (0.0, 0.0, 1e300, 1e300), (1.0, 1.0, 2.0, 2.0)]
    assert iou_pairs(boxes, boxes, 0.5) == [(2, 2, 1.0)]
    matrix = pairwise_iou(np.array(boxes), np.array(boxes))
    assert not (matrix >= 0.5)[:2].any()
