"""mAP, mAP50, mAP75 of one image: equal to running pycocotools' COCOeval directly."""

from __future__ import annotations

import random

import numpy as np
import pytest

from trainer.rewards.coco_map import ZERO, coco_map
from trainer.rewards.matching import pairwise_iou

from . import reference


def _ours(pred, gt, reuse_iou=False):
    pred_xyxy = np.array([b for b, _ in pred], float).reshape(-1, 4)
    gt_xyxy = np.array([b for b, _ in gt], float)
    iou = pairwise_iou(pred_xyxy, gt_xyxy) if reuse_iou else None
    scores = coco_map(
        pred_xyxy, tuple(label for _, label in pred), gt_xyxy, tuple(label for _, label in gt), iou
    )
    return {"map": scores.map, "map50": scores.map50, "map75": scores.map75}


def _theirs(pred, gt):
    return reference.map_scores(
        [{"bbox_2d": b, "label": label} for b, label in pred],
        [{"bbox_2d": b, "label": label} for b, label in gt],
    )


def test_perfect_match():
    # one TP at every threshold: precision 1 / (1 + 2^-52) at every recall point
    scores = _ours([([0, 0, 10, 10], "a")], [([0, 0, 10, 10], "a")])
    assert scores == pytest.approx({"map": 1.0, "map50": 1.0, "map75": 1.0})


def test_half_overlap():
    # IoU 50/150 = 1/3 < 0.5: no match at any threshold
    assert _ours([([5, 0, 15, 10], "a")], [([0, 0, 10, 10], "a")]) == {"map": 0.0, "map50": 0.0, "map75": 0.0}


def test_iou_between_thresholds():
    # IoU 0.8 (10·8 / 100): a TP for t in 0.50 … 0.80 (7 of 10 thresholds) → mAP 0.7, mAP50 = mAP75 = 1
    scores = _ours([([0, 0, 10, 8], "a")], [([0, 0, 10, 10], "a")])
    assert scores == pytest.approx({"map": 0.7, "map50": 1.0, "map75": 1.0})


def test_labels_not_in_the_ground_truth_are_ignored():
    assert _ours([([0, 0, 10, 10], "zebra")], [([0, 0, 10, 10], "a")]) == {
        "map": 0.0,
        "map50": 0.0,
        "map75": 0.0,
    }
    pred_xyxy = np.array([[0.0, 0, 1, 1]])
    assert coco_map(pred_xyxy, ("x",), pred_xyxy, ("y",)) == ZERO


def _random_case(rng: random.Random):
    labels = ["a", "b", "c"][: rng.randint(1, 3)]

    def box(scale=100):
        x, y = rng.randint(0, 900), rng.randint(0, 900)
        return [x, y, x + rng.randint(0, scale), y + rng.randint(0, scale)]

    gt = [(box(), rng.choice(labels)) for _ in range(rng.randint(1, 6))]
    many = rng.random() < 0.1
    pred = []
    for _ in range(rng.randint(95, 130) if many else rng.randint(1, 12)):
        if rng.random() < 0.6:
            b, label = rng.choice(gt)
            b = [c + rng.randint(-8, 8) for c in b]
            b = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
            pred.append((b, label if rng.random() < 0.8 else rng.choice([*labels, "z"])))
        else:
            pred.append((box(), rng.choice([*labels, "z"])))
    if rng.random() < 0.15:  # non-integer coordinates
        pred = [([c + rng.random() for c in b], label) for b, label in pred]
    if rng.random() < 0.05:  # a ground truth over COCO's area range is ignored
        gt.append(([0, 0, 200_000, 200_000], gt[0][1]))
        pred.append(([0, 0, 200_000, 199_000], gt[0][1]))
    return pred, gt


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_pycocotools(seed):
    rng = random.Random(seed)
    for _ in range(150):
        pred, gt = _random_case(rng)
        theirs = _theirs(pred, gt)
        assert _ours(pred, gt) == theirs  # bit for bit
        if all(float(c).is_integer() for b, _ in pred + gt for c in b):
            assert _ours(pred, gt, reuse_iou=True) == theirs


@pytest.mark.parametrize("seed", range(3))
def test_from_candidate_pairs_equal_to_pycocotools(seed):
    from trainer.rewards.coco_map import coco_map_pairs
    from trainer.rewards.matching import iou_pairs

    rng = random.Random(100 + seed)
    checked = 0
    for _ in range(150):
        pred, gt = _random_case(rng)
        if not all(float(c).is_integer() for b, _ in pred + gt for c in b):
            continue  # iou_pairs gives COCO's IoU for integer coordinates
        pred_rows = [tuple(map(float, b)) for b, _ in pred]
        gt_rows = [tuple(map(float, b)) for b, _ in gt]
        pairs = [(i, j, v) for i, j, v in iou_pairs(pred_rows, gt_rows, 0.3) if pred[i][1] == gt[j][1]]
        scores = coco_map_pairs(
            pairs, pred_rows, tuple(label for _, label in pred), gt_rows, tuple(label for _, label in gt)
        )
        assert {"map": scores.map, "map50": scores.map50, "map75": scores.map75} == _theirs(pred, gt)
        checked += 1
    assert checked > 100
