"""The ``detection`` verifier: detection and grounding answers scored by IoU matching and COCO mAP.

Matches V-Triune's released reward server (``DetectionVerifier`` in ``reward_server/verify.py``),
with best-pair IoU-first matching. For ε from the IoU schedule, P predictions and G ground
truths::

    penalty  = 0.6 ** |P − G|
    accuracy = Σ_k r_k · penalty · S_k / Σ_k r_k
               k ∈ {iou_max_label_first, iou_max_iou_first, map, map50, map75}

where S_k is the weighted matching score at ε (see :mod:`trainer.rewards.matching`; the
``average`` schedule averages it over :data:`AVERAGE_THRESHOLDS`) or the COCO AP, and r_k the
``det_reward_ratio`` of the sample. Format: 1.0 iff the response holds ``\\n<answer>\\n``, exactly
one ``\\n</answer>``, and at least one valid box.

Reward keys (V-Triune's names with ``_reward`` appended), and the metric each one feeds:

==========================================================  ==========================
key                                                         metric
==========================================================  ==========================
size_penalty_reward                                         0.6 ** abs(P - G)
pure_iou_score_max_label_reward, ..._max_iou_reward         S at ε (no penalty)
weighted_iou_score_max_label_reward, ..._max_iou_reward     penalty · S at ε
pure_map_score_reward, pure_map50_.., pure_map75_..         ``detection/map{,50,75}``
weighted_map_score_reward, weighted_map50_.., ..75_..       penalty · mAP
report_iou_{50,75,95,99}_label_match_pure_reward            ``detection/iou@{50,..}``
report_iou_{50,75,95,99}_label_match_precision_reward       ``detection/precision@..``
report_iou_{50,75,95,99}_label_match_recall_reward          ``detection/recall@..``
report_iou_{50,95}_iou_match_{pure,precision,recall}_reward the same, IoU-first
==========================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import numpy as np

from trainer.rewards.boxes import Boxes, extract_boxes, normalize_boxes
from trainer.rewards.coco_map import MapScores, coco_map, coco_map_pairs
from trainer.rewards.errors import RewardModelError
from trainer.rewards.matching import (
    greedy_walk,
    iou_first_sums,
    iou_first_totals,
    iou_pairs,
    label_first_sums,
    label_first_walk,
    pairwise_iou,
)
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, ratio, register_verifier
from trainer.rewards.schedule import AVERAGE_THRESHOLDS
from trainer.rewards.tags import ANSWER_CLOSE, ANSWER_OPEN

SIZE_PENALTY_BASE = 0.6
GT_SCALE = 1000  # ground-truth boxes are integers on a 0–1000 relative scale
# det_reward_ratio keys: the weighted components, in V-Triune's summation order, and w_c.
WEIGHT_KEYS = ("iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75")
RATIO_KEYS = (*WEIGHT_KEYS, "iou_completeness")
# det_reward_ratio when a sample has none: V-Triune's detection and grounding data.
DEFAULT_DET_REWARD_RATIO: Mapping[str, float] = {"iou_max_label_first": 1.0, "iou_completeness": 0.3}
REPORT_LABEL_FIRST = (0.5, 0.75, 0.95, 0.99)
REPORT_IOU_FIRST = (0.5, 0.95)
# Up to this many (prediction, ground truth) pairs of integer boxes, the matchings and mAP run in
# plain Python over the overlapping pairs (numpy's per-call overhead dominates at that size).
SMALL_PAIRS = 256

DETECTION_KEYS: tuple[str, ...] = (
    "size_penalty_reward",
    "pure_iou_score_max_iou_reward",
    "pure_iou_score_max_label_reward",
    "pure_map_score_reward",
    "pure_map50_score_reward",
    "pure_map75_score_reward",
    "weighted_iou_score_max_iou_reward",
    "weighted_iou_score_max_label_reward",
    "weighted_map_score_reward",
    "weighted_map50_score_reward",
    "weighted_map75_score_reward",
    *(
        f"report_iou_{round(t * 100)}_iou_match_{part}_reward"
        for t in REPORT_IOU_FIRST
        for part in ("pure", "precision", "recall")
    ),
    *(
        f"report_iou_{round(t * 100)}_label_match_{part}_reward"
        for t in REPORT_LABEL_FIRST
        for part in ("pure", "precision", "recall")
    ),
)

# Reward key → per-source metric name of DESIGN.md §6 (the monitor logs these).
DETECTION_METRIC_KEYS: Mapping[str, str] = {
    **{
        f"report_iou_{round(t * 100)}_label_match_{part}_reward": f"detection/{name}@{round(t * 100)}"
        for t in REPORT_LABEL_FIRST
        for part, name in (("pure", "iou"), ("precision", "precision"), ("recall", "recall"))
    },
    "pure_map_score_reward": "detection/map",
    "pure_map50_score_reward": "detection/map50",
    "pure_map75_score_reward": "detection/map75",
}


@dataclass(frozen=True)
class DetectionParams:
    """A sample's ``verifier_parm`` for detection."""

    normalized: bool  # predictions are pixels of the image the model saw, to map to 0–1000
    ratios: Mapping[str, float]  # det_reward_ratio, every RATIO_KEYS key present


def detection_params(
    reward_model: Mapping[str, Any], parm: Mapping[str, Any], *, require_weight: bool = True
) -> DetectionParams:
    """Read and check ``verifier_parm`` (``det_verifier_normalized``, ``det_reward_ratio``).

    ``require_weight`` refuses weights that are all 0 (uploads do; scoring gives accuracy 0).

    Checked once per distinct content: every sample of a source usually carries the same
    ``verifier_parm``. The cache key holds each value's type, so that ``True`` is not taken
    for ``1``; anything unhashable is checked afresh.
    """
    normalized = parm.get("det_verifier_normalized")
    given = parm.get("det_reward_ratio")
    if (normalized is None or normalized.__class__ is bool) and (given is None or given.__class__ is dict):
        key = (normalized, None if given is None else tuple((k, v.__class__, v) for k, v in given.items()))
        try:
            return _cached_params(key, require_weight)
        except TypeError:  # an unhashable value: the check below says what is wrong with it
            pass
    return _check_params(normalized, given, require_weight)


@lru_cache(maxsize=1024)
def _cached_params(
    key: tuple[bool | None, tuple[tuple[Any, type, Any], ...] | None], require_weight: bool
) -> DetectionParams:
    normalized, items = key
    return _check_params(normalized, None if items is None else {k: v for k, _, v in items}, require_weight)


def _check_params(normalized: Any, given: Any, require_weight: bool) -> DetectionParams:
    if normalized is None:
        normalized = False
    if not isinstance(normalized, bool):
        raise RewardModelError(
            "reward_model.verifier_parm.det_verifier_normalized",
            f"det_verifier_normalized must be true or false, got {normalized!r}",
        )
    if given is None:
        given = DEFAULT_DET_REWARD_RATIO
    if not isinstance(given, Mapping):
        raise RewardModelError(
            "reward_model.verifier_parm.det_reward_ratio",
            f"det_reward_ratio must be an object (dict), got {type(given).__name__}",
        )
    for key in given:
        if key not in RATIO_KEYS:
            raise RewardModelError(
                f"reward_model.verifier_parm.det_reward_ratio.{key}",
                f"unknown key {key!r} in det_reward_ratio; known keys: {', '.join(RATIO_KEYS)}",
            )
    # A key left out weighs 0, as in V-Triune.
    ratios = {
        key: ratio(given, key, 0.0, f"reward_model.verifier_parm.det_reward_ratio.{key}")
        for key in RATIO_KEYS
    }
    if require_weight and sum(ratios[key] for key in WEIGHT_KEYS) <= 0.0:
        raise RewardModelError(
            "reward_model.verifier_parm.det_reward_ratio",
            f"det_reward_ratio must give a positive weight to at least one of {', '.join(WEIGHT_KEYS)}",
        )
    return DetectionParams(normalized, MappingProxyType(ratios))


@lru_cache(maxsize=4096)
def _ground_truth_boxes(text: str) -> Boxes | None:
    return extract_boxes(text)


def ground_truth_boxes(reward_model: Mapping[str, Any]) -> Boxes:
    """The ground-truth boxes (parsed once per distinct ground truth and process)."""
    boxes = _ground_truth_boxes(ground_truth(reward_model))
    if boxes is None:
        raise RewardModelError(
            "reward_model.ground_truth",
            "ground_truth must hold <answer>[{'bbox_2d': [x1, y1, x2, y2], 'label': '...'}, ...]</answer> "
            "with at least one valid box",
        )
    return boxes


def detection_format(response: str, boxes: Boxes | None) -> float:
    """1.0 iff ``\\n<answer>\\n`` occurs, ``\\n</answer>`` occurs exactly once, and a valid box parses."""
    if response.count(ANSWER_OPEN) and response.count(ANSWER_CLOSE) == 1 and boxes is not None:
        return 1.0
    return 0.0


@lru_cache(maxsize=64)
def _threshold_table(
    threshold: float | None,
) -> tuple[tuple[float, ...], dict[float, int], tuple[tuple[float, ...], tuple[float, ...]]]:
    """The thresholds to score for ε = ``threshold`` (ε and the reported ones; all of
    :data:`AVERAGE_THRESHOLDS` for ``None``), ascending; their positions; and the ones read
    from the label-first and from the IoU-first matching."""
    wanted = set(AVERAGE_THRESHOLDS) if threshold is None else {threshold}
    values = tuple(sorted(wanted | set(REPORT_LABEL_FIRST) | set(REPORT_IOU_FIRST)))
    read = (tuple(sorted(wanted | set(REPORT_LABEL_FIRST))), tuple(sorted(wanted | set(REPORT_IOU_FIRST))))
    return values, {t: i for i, t in enumerate(values)}, read


# Report keys: (row of ``both``, threshold, pure/precision/recall keys); row 0 label-first, 1 IoU-first.
_REPORTS = tuple(
    (
        row,
        t,
        *(
            f"report_iou_{round(t * 100)}_{name}_match_{part}_reward"
            for part in ("pure", "precision", "recall")
        ),
    )
    for row, name, report in ((1, "iou", REPORT_IOU_FIRST), (0, "label", REPORT_LABEL_FIRST))
    for t in report
)


Sums = tuple[list[float], list[int]]  # (Σ matched IoU, M) at each threshold


def _numpy_sums(pred: Boxes, gt: Boxes, thresholds: tuple[float, ...]) -> tuple[Sums, Sums, MapScores]:
    """Label-first and IoU-first sums and the COCO scores, from the (P, G) IoU matrix."""
    iou = pairwise_iou(pred.xyxy, gt.xyxy)  # (P, G)
    label_id = {label: k for k, label in enumerate(dict.fromkeys(gt.labels))}
    pred_ids = np.array([label_id.get(label, -1) for label in pred.labels])
    same_label = pred_ids[:, None] == np.array([label_id[label] for label in gt.labels])  # (P, G)
    maps = coco_map(
        pred.xyxy, pred.labels, gt.xyxy, gt.labels, iou if pred.integral and gt.integral else None
    )
    return label_first_sums(iou, same_label, thresholds), iou_first_sums(iou, same_label, thresholds), maps


def _small_sums(pred: Boxes, gt: Boxes, thresholds: tuple[float, ...]) -> tuple[Sums, Sums, MapScores]:
    """:func:`_numpy_sums` in plain Python over the few pairs that overlap enough, for a few
    boxes with integer coordinates (the usual answer): IoUs of :func:`iou_pairs` have
    :func:`pairwise_iou`'s bits, which are COCO's for integer coordinates."""
    pred_rows, gt_rows = pred.coordinate_rows(), gt.coordinate_rows()
    pred_labels, gt_labels = pred.labels, gt.labels
    n_gt = len(gt_labels)
    pairs = iou_pairs(pred_rows, gt_rows, thresholds[0])  # prediction-major
    same = [pred_labels[i] == gt_labels[j] for i, j, _ in pairs]
    per_gt: dict[int, list[tuple[int, float]]] = {}  # label-first candidates by ground truth
    for (i, j, v), agree in zip(pairs, same, strict=True):
        if agree:
            per_gt.setdefault(j, []).append((i, v))
    label_sums = label_first_walk([per_gt[j] for j in sorted(per_gt)], thresholds)
    # By decreasing IoU; reverse=True keeps the sort stable: ties stay in prediction-major order.
    found = sorted([(i * n_gt + j, v) for i, j, v in pairs], key=itemgetter(1), reverse=True)
    preds, gts, values = greedy_walk(found, len(pred_labels), n_gt)
    agree_taken = [pred_labels[i] == gt_labels[j] for i, j in zip(preds, gts, strict=True)]
    iou_sums = iou_first_totals(values, agree_taken, thresholds)
    same_pairs = [pair for pair, agree in zip(pairs, same, strict=True) if agree]
    maps = coco_map_pairs(same_pairs, pred_rows, pred_labels, gt_rows, gt_labels)
    return label_sums, iou_sums, maps


def _at(total: float, matches: int, n_pred: int, n_gt: int, w_c: float) -> tuple[float, float, float, float]:
    """(mean IoU, precision, recall, weighted) from Σ matched IoU and M: :func:`match_scores`'
    arithmetic, at one threshold."""
    miss = (n_gt - matches) / n_gt
    false_alarm = 0.0 if n_pred == 0 else (n_pred - matches) / n_pred
    mean = total / n_gt
    complete = 1.0 - (miss + false_alarm) / 2.0
    return mean, 1 - false_alarm, 1 - miss, mean * (1.0 - w_c) + complete * w_c


def detection_scores(
    pred: Boxes, gt: Boxes, ratios: Mapping[str, float], threshold: float | None
) -> dict[str, float]:
    """``accuracy_reward`` and every :data:`DETECTION_KEYS` entry for boxes ``pred`` against ``gt``.

    ``threshold`` is ε, or ``None`` for the average over :data:`AVERAGE_THRESHOLDS`.

    >>> one = Boxes(np.array([[0.0, 0, 10, 10]]), ("dog",))
    >>> two = Boxes(np.array([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), ("dog", "dog"))
    >>> r = detection_scores(two, one, {"iou_max_label_first": 1.0, "iou_completeness": 0.3}, 0.85)
    >>> round(r["accuracy_reward"], 4)  # 0.6 · (0.7 · 1/1 + 0.3 · (1 − (0 + 1/2)/2))
    0.555
    """
    return _detection_scores(pred, gt, {key: float(ratios.get(key, 0.0)) for key in RATIO_KEYS}, threshold)


def _detection_scores(
    pred: Boxes, gt: Boxes, ratios: Mapping[str, float], threshold: float | None
) -> dict[str, float]:
    """:func:`detection_scores` with ``ratios`` holding every RATIO_KEYS key as a float."""
    thresholds, index, read = _threshold_table(threshold)
    n_pred, n_gt = len(pred), len(gt)
    if pred.integral and gt.integral and n_pred * n_gt <= SMALL_PAIRS:
        label_sums, iou_sums, maps = _small_sums(pred, gt, thresholds)
    else:
        label_sums, iou_sums, maps = _numpy_sums(pred, gt, thresholds)
    # Row 0 label-first, row 1 IoU-first: scores at the thresholds that are read.
    w_c = ratios["iou_completeness"]
    both = [
        {t: _at(sums[index[t]], counts[index[t]], n_pred, n_gt, w_c) for t in row_read}
        for (sums, counts), row_read in zip((label_sums, iou_sums), read, strict=True)
    ]
    if threshold is None:  # "average": the mean over AVERAGE_THRESHOLDS, summed in order
        at = [sum(s[t][3] for t in AVERAGE_THRESHOLDS) / len(AVERAGE_THRESHOLDS) for s in both]
    else:
        at = [s[threshold][3] for s in both]

    penalty = SIZE_PENALTY_BASE ** abs(n_pred - n_gt)
    # In WEIGHT_KEYS order: iou_max_iou_first, iou_max_label_first, map, map50, map75.
    pure = (at[1], at[0], maps.map, maps.map50, maps.map75)
    weighted = [value * penalty for value in pure]
    norm = 0.0
    total = 0.0
    for key, value in zip(WEIGHT_KEYS, weighted, strict=True):  # V-Triune's summation order
        norm += ratios[key]
        total += value * ratios[key]
    rewards = {
        "accuracy_reward": total / norm if norm > 0 else 0.0,
        "size_penalty_reward": penalty,
        "pure_iou_score_max_iou_reward": pure[0],
        "pure_iou_score_max_label_reward": pure[1],
        "pure_map_score_reward": pure[2],
        "pure_map50_score_reward": pure[3],
        "pure_map75_score_reward": pure[4],
        "weighted_iou_score_max_iou_reward": weighted[0],
        "weighted_iou_score_max_label_reward": weighted[1],
        "weighted_map_score_reward": weighted[2],
        "weighted_map50_score_reward": weighted[3],
        "weighted_map75_score_reward": weighted[4],
    }
    for row, t, pure_key, precision_key, recall_key in _REPORTS:
        mean, precision, recall, _ = both[row][t]
        rewards[pure_key] = mean
        rewards[precision_key] = precision
        rewards[recall_key] = recall
    return rewards


@register_verifier("detection")
class DetectionVerifier(Verifier):
    """Detection and grounding: box lists in ``<answer>`` tags against the ground truth's.

    >>> gt = "<answer>\\n[{'bbox_2d': [100, 100, 200, 200], 'label': 'dog'}]\\n</answer>"
    >>> response = "<think>\\nlook\\n</think>\\n" + gt  # the ground truth itself as the answer
    >>> r = DetectionVerifier().score(response, {"ground_truth": gt}, ScoreContext())
    >>> r["accuracy_reward"], r["format_reward"]
    (1.0, 1.0)
    """

    extra_keys = DETECTION_KEYS
    parm_keys = frozenset({"det_verifier_normalized", "det_reward_ratio"})

    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        # weights all 0: accuracy 0 and the format still scored, as the reference does
        params = detection_params(reward_model, self.check_parm_keys(reward_model), require_weight=False)
        gt = ground_truth_boxes(reward_model)
        pred = extract_boxes(response)
        fmt = detection_format(response, pred)
        if pred is not None and params.normalized:
            if context.image_size is None:
                raise ValueError(
                    "image_size (width, height) is required when det_verifier_normalized is true"
                )
            pred = normalize_boxes(pred, *context.image_size)
        if pred is None:
            rewards = dict.fromkeys(DETECTION_KEYS, 0.0)
            rewards["accuracy_reward"] = 0.0
        else:
            threshold = (
                None
                if context.schedule.average
                else context.schedule.threshold(context.step, context.total_steps)
            )
            rewards = _detection_scores(pred, gt, params.ratios, threshold)
        rewards["format_reward"] = fmt
        return rewards

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        detection_params(reward_model, self.check_parm_keys(reward_model))
        boxes = ground_truth_boxes(reward_model)
        outside = np.flatnonzero(((boxes.xyxy < 0) | (boxes.xyxy > GT_SCALE)).any(axis=1))
        if outside.size:
            k = int(outside[0])
            coords = [int(c) if float(c).is_integer() else float(c) for c in boxes.xyxy[k]]
            raise RewardModelError(
                "reward_model.ground_truth",
                f"ground-truth box {k} {coords} is off the 0–{GT_SCALE} scale: "
                f"coordinates must be in [0, {GT_SCALE}]",
            )
