"""IoU of box pairs and the two greedy matchings of the detection reward, at many thresholds at once.

Formulas (DESIGN.md §4; V-Triune's ``reward_server/utils/det_helper.py``), with P predictions,
G ground truths and M matches at threshold ε::

    mean_iou     = Σ matched IoU / G
    miss         = (G − M) / G
    false_alarm  = (P − M) / P            (0 when P = 0)
    completeness = 1 − (miss + false_alarm) / 2
    weighted     = (1 − w_c) · mean_iou + w_c · completeness

The IoU of all pairs is one numpy expression (:func:`pairwise_iou`), or, for the few boxes of a
usual answer, a plain Python loop that keeps only the pairs that can match (:func:`iou_pairs`,
same bits; numpy's per-call overhead is most of the cost at that size). The greedy matchings
are sequential by nature; only pairs with IoU ≥ the smallest threshold can ever match, which
leaves a handful of candidate pairs per answer, walked in plain Python
(:func:`label_first_walk`, :func:`greedy_walk`) with a numpy path over (T, P) arrays for large
inputs. A threshold at which no candidate IoU changes side gives the previous threshold's
matching without a new pass. Every arithmetic operation is done in the reference's order, so
scores are equal to the last bit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def pairwise_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every (prediction, ground truth) pair of ``xyxy`` boxes: (P, 4), (G, 4) → (P, G).

    0 when the boxes only touch or do not overlap. The arithmetic is the reference's
    ``compute_iou(pred, gt)``: intersection / (area_pred + area_gt − intersection).

    >>> pairwise_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 1, 3, 3], [2.0, 0, 4, 2]]))
    array([[0.14285714, 0.        ]])
    """
    low = np.maximum(pred[:, None, :2], gt[None, :, :2])  # (P, G, 2): intersection x1, y1
    high = np.minimum(pred[:, None, 2:], gt[None, :, 2:])  # (P, G, 2): intersection x2, y2
    side = high - low
    overlap = (side > 0).all(axis=2)  # (P, G)
    size_p = pred[:, 2:] - pred[:, :2]
    size_g = gt[:, 2:] - gt[:, :2]
    out = np.zeros(overlap.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge box: area inf, IoU 0 (or NaN, no match)
        inter = side[..., 0] * side[..., 1]
        union = (size_p[:, 0] * size_p[:, 1])[:, None] + (size_g[:, 0] * size_g[:, 1])[None, :] - inter
        np.divide(inter, union, out=out, where=overlap)
    return out


def iou_pairs(
    pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]], min_iou: float
) -> list[tuple[int, int, float]]:
    """Every (prediction, ground truth, IoU) with IoU ≥ ``min_iou``, prediction-major, in plain Python.

    For a few boxes, a loop over the pairs costs less than numpy's per-call overhead; pairs that
    do not overlap are rejected before any division. The arithmetic is :func:`pairwise_iou`'s,
    operation for operation, so each IoU has the same bits (a zero or non-number union gives
    no pair, as NaN fails every ``≥``).

    >>> iou_pairs([(0.0, 0, 2, 2)], [(1.0, 1, 3, 3), (2.0, 0, 4, 2)], 0.1)
    [(0, 0, 0.14285714285714285)]
    """
    gt_boxes = [(x1, y1, x2, y2, (x2 - x1) * (y2 - y1)) for x1, y1, x2, y2 in gt]
    out: list[tuple[int, int, float]] = []
    for i, (px1, py1, px2, py2) in enumerate(pred):
        area = (px2 - px1) * (py2 - py1)
        for j, (gx1, gy1, gx2, gy2, gt_area) in enumerate(gt_boxes):
            w = (px2 if px2 < gx2 else gx2) - (px1 if px1 > gx1 else gx1)
            if not w > 0:
                continue
            h = (py2 if py2 < gy2 else gy2) - (py1 if py1 > gy1 else gy1)
            if not h > 0:
                continue
            inter = w * h
            union = area + gt_area - inter
            if union > 0:
                value = inter / union
                if value >= min_iou:
                    out.append((i, j, value))
    return out


@dataclass(frozen=True)
class MatchScores:
    """Scores at each threshold of ``thresholds``."""

    thresholds: tuple[float, ...]
    mean_iou: tuple[float, ...]
    completeness: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    weighted: tuple[float, ...]


def match_scores(
    thresholds: Sequence[float],
    iou_sum: Sequence[float],
    matches: Sequence[int],
    n_pred: int,
    n_gt: int,
    w_c: float,
) -> MatchScores:
    """The module's formulas from Σ matched IoU and M at each threshold.

    >>> [round(w, 6) for w in match_scores([0.5], [0.8], [1], 2, 1, 0.3).weighted]  # 0.7·0.8 + 0.3·0.75
    [0.785]
    """
    mean_iou, completeness, precision, recall, weighted = [], [], [], [], []
    for total, m in zip(iou_sum, matches, strict=True):
        mean = total / n_gt
        miss = (n_gt - m) / n_gt
        false_alarm = 0.0 if n_pred == 0 else (n_pred - m) / n_pred
        complete = 1.0 - (miss + false_alarm) / 2.0
        mean_iou.append(mean)
        completeness.append(complete)
        precision.append(1 - false_alarm)
        recall.append(1 - miss)
        weighted.append(mean * (1.0 - w_c) + complete * w_c)
    return MatchScores(
        tuple(thresholds),
        tuple(mean_iou),
        tuple(completeness),
        tuple(precision),
        tuple(recall),
        tuple(weighted),
    )


# Above this many (threshold × candidate pair) steps the label-first matching runs on numpy
# (T, P) arrays instead of Python loops over the candidate pairs.
PYTHON_LOOP_LIMIT = 4096
# Up to this many pairs the candidates are picked from the IoU matrix as a Python list.
SMALL_PAIRS = 64


def same_side(values: list[float], low: float, high: float) -> bool:
    """No value v with low ≤ v < high: a test v ≥ t gives the same answer for t = low and t = high."""
    i = bisect_left(values, low)
    return i == len(values) or values[i] >= high


def label_first_sums(
    iou: np.ndarray, same_label: np.ndarray, thresholds: Sequence[float], *, vectorized: bool | None = None
) -> tuple[list[float], list[int]]:
    """Label-first greedy matching at every threshold (ascending): (Σ matched IoU, M) per threshold.

    For each ground truth in order, the unmatched prediction of the same label with the highest
    IoU (ties: the earliest) is its match if that IoU ≥ ε. A prediction below the smallest ε
    can never be that match, so only candidate pairs are visited. ``vectorized`` forces one
    implementation (tests).
    """
    per_gt: dict[int, list[tuple[int, float]]] = {}  # candidates by ground truth, then prediction
    if iou.size <= SMALL_PAIRS and not vectorized:
        rows, same = iou.tolist(), same_label.tolist()
        for j in range(iou.shape[1]):
            for i, row in enumerate(rows):
                if same[i][j] and row[j] >= thresholds[0]:
                    per_gt.setdefault(j, []).append((i, row[j]))
    else:
        candidate = same_label & (iou >= thresholds[0])  # (P, G)
        if vectorized is None:
            vectorized = int(candidate.sum()) * len(thresholds) > PYTHON_LOOP_LIMIT
        if vectorized:
            return _label_first_numpy(iou, candidate, np.array(thresholds))
        gts, preds = np.nonzero(candidate.T)
        for j, i, v in zip(gts.tolist(), preds.tolist(), iou[preds, gts].tolist(), strict=True):
            per_gt.setdefault(j, []).append((i, v))
    return label_first_walk(list(per_gt.values()), thresholds)


def label_first_walk(
    per_gt: Sequence[Sequence[tuple[int, float]]], thresholds: Sequence[float]
) -> tuple[list[float], list[int]]:
    """:func:`label_first_sums` from its candidate pairs: ``per_gt`` lists, for each ground truth
    in order, its (prediction, IoU) pairs of the same label with IoU ≥ ``thresholds[0]``, by
    prediction index (ground truths without a candidate may be left out).

    >>> label_first_walk([[(0, 0.9), (1, 0.95)], [(0, 0.7)]], (0.5, 0.8))  # 0.95 + 0.7; 0.95
    ([1.65, 0.95], [2, 1])
    """
    ordered = sorted(v for pairs in per_gt for _, v in pairs)
    sums: list[float] = []
    counts: list[int] = []
    for n, t in enumerate(thresholds):
        if n and same_side(ordered, thresholds[n - 1], t):
            sums.append(sums[-1])
            counts.append(counts[-1])
            continue
        taken: set[int] = set()
        total, count = 0.0, 0
        for pairs in per_gt:
            best_i, best_v = -1, -1.0
            for i, v in pairs:
                if v > best_v and i not in taken:  # strict: the earliest on ties
                    best_i, best_v = i, v
            if best_i >= 0 and best_v >= t:
                taken.add(best_i)
                total += best_v  # running sum in match order, as the reference's sum()
                count += 1
        sums.append(total)
        counts.append(count)
    return sums, counts


def _label_first_numpy(
    iou: np.ndarray, candidate: np.ndarray, thresholds: np.ndarray
) -> tuple[list[float], list[int]]:
    n_pred = iou.shape[0]
    n_thr = len(thresholds)
    taken = np.zeros((n_thr, n_pred), dtype=bool)  # (T, P)
    iou_sum = np.zeros(n_thr)
    matches = np.zeros(n_thr, dtype=np.int64)
    rows = np.arange(n_thr)
    for j in np.flatnonzero(candidate.any(axis=0)).tolist():
        score = np.where(candidate[None, :, j] & ~taken, iou[None, :, j], -1.0)  # (T, P)
        best = score.argmax(axis=1)  # first maximum: the earliest prediction
        best_iou = score[rows, best]
        hit = best_iou >= thresholds
        taken[rows[hit], best[hit]] = True
        iou_sum += np.where(hit, best_iou, 0.0)  # x + 0.0 == x: the reference's running sum
        matches += hit
    return iou_sum.tolist(), matches.tolist()


def greedy_pairs(iou: np.ndarray, min_iou: float) -> tuple[list[int], list[int], list[float]]:
    """The IoU-first greedy matching: pairs taken by decreasing IoU while IoU ≥ ``min_iou``.

    Repeatedly taking the globally highest-IoU pair of unmatched boxes (ties: the first pair in
    prediction-major order) is the same as walking all pairs sorted by decreasing IoU and
    keeping each pair whose two boxes are still free; the pairs come out in decreasing IoU, so
    the matching at any ε ≥ ``min_iou`` is a prefix of this one. Returns (pred, gt, iou) lists.

    V-Triune's released matcher records the last pair it scanned instead of the best one; this
    is the intended best-pair matching.
    """
    n_pred, n_gt = iou.shape
    if iou.size <= SMALL_PAIRS:
        flat_list = iou.ravel().tolist()
        found = [(k, v) for k, v in enumerate(flat_list) if v >= min_iou]
        found.sort(key=lambda pair: -pair[1])  # stable: ties stay in prediction-major order
        pairs = iter(found)
    else:
        flat = iou.ravel()
        candidates = np.flatnonzero(flat >= min_iou)
        order = candidates[np.argsort(-flat[candidates], kind="stable")]
        pairs = zip(order.tolist(), flat[order].tolist(), strict=True)
    return greedy_walk(pairs, n_pred, n_gt)


def greedy_walk(
    pairs: Iterable[tuple[int, float]], n_pred: int, n_gt: int
) -> tuple[list[int], list[int], list[float]]:
    """:func:`greedy_pairs` from its candidates: (flat index ``i · n_gt + j``, IoU) by decreasing
    IoU, ties in prediction-major order; each pair whose two boxes are still free is taken.

    >>> greedy_walk([(0, 0.9), (1, 0.8), (3, 0.6)], 2, 2)  # (0, 1) is skipped: prediction 0 is taken
    ([0, 1], [0, 1], [0.9, 0.6])
    """
    pred_free = [True] * n_pred
    gt_free = [True] * n_gt
    limit = min(n_pred, n_gt)
    preds: list[int] = []
    gts: list[int] = []
    values: list[float] = []
    for k, v in pairs:
        i, j = divmod(k, n_gt)
        if pred_free[i] and gt_free[j]:
            pred_free[i] = gt_free[j] = False
            preds.append(i)
            gts.append(j)
            values.append(v)
            if len(preds) == limit:
                break
    return preds, gts, values


def iou_first_sums(
    iou: np.ndarray, same_label: np.ndarray, thresholds: Sequence[float]
) -> tuple[list[float], list[int]]:
    """IoU-first greedy matching at every threshold (ascending): (Σ matched IoU, M) per threshold.

    A matched pair whose labels differ counts IoU 0 but still uses up both boxes and counts in
    M, as in V-Triune. All thresholds at once: the matching at ε is the prefix of
    :func:`greedy_pairs` with IoU ≥ ε.
    """
    preds, gts, values = greedy_pairs(iou, thresholds[0])
    same = [bool(same_label[i, j]) for i, j in zip(preds, gts, strict=True)]
    return iou_first_totals(values, same, thresholds)


def iou_first_totals(
    values: Sequence[float], same: Sequence[bool], thresholds: Sequence[float]
) -> tuple[list[float], list[int]]:
    """(Σ matched IoU, M) at each threshold from the greedy pairs' IoUs (decreasing) and whether
    each pair's labels agree (a pair that disagrees counts IoU 0, and in M).

    >>> iou_first_totals([0.9, 0.8, 0.6], [True, False, True], (0.5, 0.85))  # 0.9 + 0 + 0.6; 0.9
    ([1.5, 0.9], [3, 1])
    """
    running = [0.0]  # running[m]: Σ of the first m scores, summed in order as Python's sum()
    for v, agree in zip(values, same, strict=True):
        running.append(running[-1] + (v if agree else 0.0))
    negated = [-v for v in values]  # ascending
    counts = [bisect_right(negated, -t) for t in thresholds]  # pairs with IoU ≥ t
    return [running[m] for m in counts], counts


def match_label_first(
    iou: np.ndarray, same_label: np.ndarray, thresholds: Sequence[float], completeness_weight: float
) -> MatchScores:
    """Scores of the label-first matching at every threshold (see :func:`label_first_sums`)."""
    iou_sum, matches = label_first_sums(iou, same_label, thresholds)
    return match_scores(thresholds, iou_sum, matches, *iou.shape, completeness_weight)


def match_iou_first(
    iou: np.ndarray, same_label: np.ndarray, thresholds: Sequence[float], completeness_weight: float
) -> MatchScores:
    """Scores of the IoU-first matching at every threshold (see :func:`iou_first_sums`)."""
    iou_sum, matches = iou_first_sums(iou, same_label, thresholds)
    return match_scores(thresholds, iou_sum, matches, *iou.shape, completeness_weight)
