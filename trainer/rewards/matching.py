"""IoU of box pairs and the two greedy matchings of the detection reward, at many thresholds at once.

Formulas (DESIGN.md §4; V-Triune's ``reward_server/utils/det_helper.py``), with P predictions,
G ground truths and M matches at threshold ε::

    mean_iou     = Σ matched IoU / G
    miss         = (G − M) / G
    false_alarm  = (P − M) / P            (0 when P = 0)
    completeness = 1 − (miss + false_alarm) / 2
    weighted     = (1 − w_c) · mean_iou + w_c · completeness

Every operation is done in the reference's order so that scores are equal to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pairwise_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every (prediction, ground truth) pair of ``xyxy`` boxes: (P, 4), (G, 4) → (P, G).

    0 when the boxes only touch or do not overlap. The arithmetic is the reference's
    ``compute_iou(pred, gt)``: intersection / (area_pred + area_gt − intersection).

    >>> pairwise_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 1, 3, 3], [2.0, 0, 4, 2]]))
    array([[0.14285714, 0.        ]])
    """
    p = pred[:, None, :]  # (P, 1, 4)
    g = gt[None, :, :]  # (1, G, 4)
    ix1 = np.maximum(p[..., 0], g[..., 0])
    iy1 = np.maximum(p[..., 1], g[..., 1])
    ix2 = np.minimum(p[..., 2], g[..., 2])
    iy2 = np.minimum(p[..., 3], g[..., 3])
    overlap = (ix2 > ix1) & (iy2 > iy1)  # (P, G)
    inter = (ix2 - ix1) * (iy2 - iy1)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = area_p[:, None] + area_g[None, :] - inter
    out = np.zeros(overlap.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=overlap)
    return out


@dataclass(frozen=True)
class MatchScores:
    """Scores at each threshold of ``thresholds`` (all arrays (T,))."""

    thresholds: np.ndarray
    mean_iou: np.ndarray
    completeness: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    weighted: np.ndarray


def match_scores(
    thresholds: np.ndarray, iou_sum: np.ndarray, matches: np.ndarray, n_pred: int, n_gt: int, w_c: float
) -> MatchScores:
    """The module's formulas from Σ matched IoU and M at each threshold (arrays (..., T))."""
    mean_iou = iou_sum / n_gt
    miss = (n_gt - matches) / n_gt
    false_alarm = np.zeros_like(mean_iou) if n_pred == 0 else (n_pred - matches) / n_pred
    completeness = 1.0 - (miss + false_alarm) / 2.0
    weighted = mean_iou * (1.0 - w_c) + completeness * w_c
    return MatchScores(thresholds, mean_iou, completeness, 1 - false_alarm, 1 - miss, weighted)


# Below this many (threshold × candidate pair) steps the greedy loops run in plain Python over
# the candidate pairs: for the handful of boxes of a typical answer that is several times
# faster than numpy's per-call overhead; above it, numpy steps over (T, P) arrays.
PYTHON_LOOP_LIMIT = 4096


def label_first_sums(
    iou: np.ndarray, same_label: np.ndarray, thresholds: np.ndarray, *, vectorized: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Label-first greedy matching at every threshold: (Σ matched IoU, M), both (T,).

    For each ground truth in order, the unmatched prediction of the same label with the highest
    IoU (ties: the earliest) is its match if that IoU ≥ ε. Only pairs with IoU ≥ min(ε) can
    ever match, so only those are visited. ``vectorized`` forces one implementation (tests).
    """
    n_pred, n_gt = iou.shape
    candidate = same_label & (iou >= thresholds.min())  # (P, G)
    if vectorized is None:
        vectorized = int(candidate.sum()) * len(thresholds) > PYTHON_LOOP_LIMIT
    if vectorized:
        return _label_first_numpy(iou, candidate, thresholds)
    gts, preds = np.nonzero(candidate.T)  # by ground truth, then prediction: the scan order
    values = iou[preds, gts].tolist()
    per_gt: list[list[tuple[int, float]]] = [[] for _ in range(n_gt)]
    for j, i, v in zip(gts.tolist(), preds.tolist(), values, strict=True):
        per_gt[j].append((i, v))
    sums, counts = [], []
    for t in thresholds.tolist():
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
    return np.array(sums), np.array(counts, dtype=np.int64)


def _label_first_numpy(
    iou: np.ndarray, candidate: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n_pred, n_gt = iou.shape
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
    return iou_sum, matches


def greedy_pairs(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IoU-first greedy matching: pairs taken by decreasing IoU while IoU ≥ ``min_iou``.

    Repeatedly taking the globally highest-IoU pair of unmatched boxes (ties: the first pair in
    prediction-major order) is the same as walking all pairs sorted by decreasing IoU and
    keeping each pair whose two boxes are still free; the pairs come out in decreasing IoU, so
    the matching at any ε ≥ ``min_iou`` is a prefix of this one. Returns (pred, gt, iou) (K,).

    V-Triune's released matcher records the last pair it scanned instead of the best one; this
    is the intended best-pair matching.
    """
    n_pred, n_gt = iou.shape
    flat = iou.ravel()
    candidates = np.flatnonzero(flat >= min_iou)
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    pred_free = [True] * n_pred
    gt_free = [True] * n_gt
    limit = min(n_pred, n_gt)
    taken: list[int] = []
    for k in order.tolist():
        i, j = divmod(k, n_gt)
        if pred_free[i] and gt_free[j]:
            pred_free[i] = gt_free[j] = False
            taken.append(k)
            if len(taken) == limit:
                break
    index = np.array(taken, dtype=np.int64)
    return index // max(n_gt, 1), index % max(n_gt, 1), flat[index]


def iou_first_sums(
    iou: np.ndarray, same_label: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IoU-first greedy matching at every threshold: (Σ matched IoU, M), both (T,).

    A matched pair whose labels differ counts IoU 0 but still uses up both boxes and counts in
    M, as in V-Triune. All thresholds at once: the matching at ε is the prefix of
    :func:`greedy_pairs` with IoU ≥ ε.
    """
    pred_idx, gt_idx, pair_iou = greedy_pairs(iou, float(thresholds.min()))
    score = np.where(same_label[pred_idx, gt_idx], pair_iou, 0.0)
    running = np.concatenate(([0.0], np.cumsum(score)))  # sequential sums, as Python's sum()
    matches = (pair_iou[None, :] >= thresholds[:, None]).sum(axis=1)
    return running[matches], matches


def match_label_first(
    iou: np.ndarray, same_label: np.ndarray, thresholds: np.ndarray, completeness_weight: float
) -> MatchScores:
    """Scores of the label-first matching at every threshold (see :func:`label_first_sums`)."""
    iou_sum, matches = label_first_sums(iou, same_label, thresholds)
    return match_scores(thresholds, iou_sum, matches, *iou.shape, completeness_weight)


def match_iou_first(
    iou: np.ndarray, same_label: np.ndarray, thresholds: np.ndarray, completeness_weight: float
) -> MatchScores:
    """Scores of the IoU-first matching at every threshold (see :func:`iou_first_sums`)."""
    iou_sum, matches = iou_first_sums(iou, same_label, thresholds)
    return match_scores(thresholds, iou_sum, matches, *iou.shape, completeness_weight)
