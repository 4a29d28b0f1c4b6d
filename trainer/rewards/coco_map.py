"""COCO box mAP of one image, equal to pycocotools' ``COCOeval`` (stats[0], [1], [2]) to the last bit.

The detection reward scores one image at a time with every prediction at confidence 1.0
(V-Triune's ``pack_for_map_score``). Building ``COCO``/``COCOeval`` objects for that costs
milliseconds of bookkeeping (four area ranges, three detection limits, twelve summaries); this
module computes the three numbers that are used, following ``cocoeval.py`` step for step:

- categories are the ground-truth labels; predictions of other labels are dropped (no
  prediction left → all three are 0, as in V-Triune);
- per category: predictions in order (equal scores keep their order under COCO's stable sort),
  at most 100; a ground truth outside the area range [0, 1e10] is ignored; each prediction takes
  the unmatched ground truth of highest IoU ≥ t (ties: the later one), non-ignored first;
- precision at the 101 recall thresholds from the cumulative TP/FP, made monotone;
- mAP = mean of precision over categories with a non-ignored ground truth, thresholds and
  recall points; mAP50 and mAP75 the same at t = 0.5 and 0.75; -1 when no category counts.

IoUs come from one numpy expression over all pairs (or are reused from the matching;
:func:`coco_map_pairs` takes the candidate pairs the matching found). Only pairs with IoU ≥ 0.5
can match, usually one or two per prediction, so the greedy matching walks those in Python;
thresholds at which no IoU changes side share one pass; the precision table is built from runs
of equal values and averaged by numpy in COCO's own order (its summation order decides the last
bit, so the sum stays numpy's). Each threshold's block of the table, with its mean (mAP50,
mAP75), and the three means of a whole matching pattern are cached: the same patterns come back
across responses.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# pycocotools' Params for bbox evaluation (computed the same way, so equality tests find 0.75).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100
AREA_RANGE = (0.0**2, 1e5**2)
_MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
_T50 = int(np.where(IOU_THRESHOLDS == 0.5)[0][0])
_T75 = int(np.where(IOU_THRESHOLDS == 0.75)[0][0])
_RECALL = RECALL_THRESHOLDS.tolist()
_THRESHOLD_LIST = _MATCH_THRESHOLDS.tolist()
_EPS = float(np.spacing(1))
_CACHED_DETECTIONS = 16  # accumulate results and rows are cached for at most this many detections
_CACHED_CATEGORIES = 8  # and rows for at most this many categories (a block is 101 × K floats)


@dataclass(frozen=True)
class MapScores:
    """COCO AP@[.5:.95], AP@.5 and AP@.75 (``COCOeval.stats[0:3]``)."""

    map: float
    map50: float
    map75: float


ZERO = MapScores(0.0, 0.0, 0.0)


def coco_iou(dt_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """pycocotools' ``maskUtils.iou`` for boxes (no crowd): (D, 4), (G, 4) xywh → (D, G)."""
    d = dt_xywh[:, None, :]
    g = gt_xywh[None, :, :]
    out = np.zeros((len(dt_xywh), len(gt_xywh)), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge box: area inf, IoU 0 (or NaN, no match)
        w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
        h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
        inter = w * h
        union = (dt_xywh[:, 2] * dt_xywh[:, 3])[:, None] + (gt_xywh[:, 2] * gt_xywh[:, 3])[None, :] - inter
        np.divide(inter, union, out=out, where=(w > 0) & (h > 0))
    return out


def _match(per_dt: list[list[tuple[int, float]]], ignore: list[bool]) -> tuple[list[int], list[int]]:
    """``evaluateImg``'s greedy matching at the ten IoU thresholds: dtMatches > 0 and dtIgnore.

    ``per_dt[d]``: the (ground truth, IoU) pairs of detection d (in order) with a ground truth of
    its category and IoU ≥ 0.5, the lowest threshold (no other pair can match);
    ``ignore[g]``: ground truth g is ignored. Each detection in turn takes the free ground truth
    with the highest IoU ≥ t, the last one on ties (``cocoeval.py`` keeps a candidate whose IoU
    is ≥ the best so far), non-ignored ones first (COCO sorts them first and stops at the first
    ignored one once it has a match). Returns, per threshold, two bit masks over the detections
    (bit d: detection d matched; detection d matched an ignored ground truth).
    """
    if any(ignore):  # COCO's order: non-ignored ground truths first, each group in id order
        per_dt = [sorted(pairs, key=lambda pair: ignore[pair[0]]) for pairs in per_dt]
    ordered = sorted(v for pairs in per_dt for _, v in pairs)
    matched_rows: list[int] = []
    ignored_rows: list[int] = []
    below = -1  # how many IoUs are < the previous threshold
    for t in _THRESHOLD_LIST:
        n_below = bisect_left(ordered, t)
        if n_below == below:  # no IoU in [previous t, t): the same matching
            matched_rows.append(matched_rows[-1])
            ignored_rows.append(ignored_rows[-1])
            continue
        below = n_below
        taken: set[int] = set()
        matched = ignored = 0
        for d, pairs in enumerate(per_dt):
            best, best_v = -1, t
            for g, v in pairs:
                if g in taken:
                    continue
                if best > -1 and not ignore[best] and ignore[g]:
                    break
                if v < best_v:
                    continue
                best, best_v = g, v
            if best > -1:
                taken.add(best)
                matched |= 1 << d
                if ignore[best]:
                    ignored |= 1 << d
        matched_rows.append(matched)
        ignored_rows.append(ignored)
    return matched_rows, ignored_rows


def _precision(
    matched_rows: Sequence[int], ignored_rows: Sequence[int], dt_cat: tuple[int, ...], npig: tuple[int, ...]
) -> list[tuple[np.ndarray, float]]:
    """``accumulate`` for one image: per IoU threshold, the (R, K) block of the precision table
    (T, R, K) at each recall threshold and category, with the block's COCO mean.

    ``matched_rows``/``ignored_rows``: the bit masks of :func:`_match` per threshold; each
    block comes from :func:`_row_table`.
    """
    # Rows of many detections or categories are not cached (large keys or blocks, rarely seen again).
    cached = len(dt_cat) <= _CACHED_DETECTIONS and len(npig) <= _CACHED_CATEGORIES
    row_table = _row_table if cached else _row_table.__wrapped__
    blocks: list[tuple[np.ndarray, float]] = []
    last = None
    for matched, ignored in zip(matched_rows, ignored_rows, strict=True):
        if (matched, ignored) != last:  # else the same matching as the previous threshold
            block = row_table(matched, ignored, dt_cat, npig)
            last = (matched, ignored)
        blocks.append(block)
    return blocks


@lru_cache(maxsize=4096)
def _row_table(
    matched: int, ignored: int, dt_cat: tuple[int, ...], npig: tuple[int, ...]
) -> tuple[np.ndarray, float]:
    """One threshold's block of the precision table, (R, K), read-only, and its COCO mean (the
    mAP50 or mAP75 when the threshold is 0.5 or 0.75); cached: the same row (every detection
    matched, say) comes back at many thresholds and across responses."""
    values, counts = _row_runs(matched, ignored, dt_cat, npig)
    block = np.repeat(np.array(values), counts).reshape(len(npig), len(_RECALL)).T.copy()  # (K, R) -> (R, K)
    block.flags.writeable = False
    return block, _mean(block, 0 not in npig)


def _row_runs(
    matched: int, ignored: int, dt_cat: tuple[int, ...], npig: tuple[int, ...]
) -> tuple[list[float], list[int]]:
    """One threshold's precision at the 101 recall points, category after category, as runs of
    equal values: (values, lengths).

    Per category, over its detections in order: tp and fp counts, recall rc = tp / npig and
    precision pr = tp / (fp + tp + ε), pr made non-increasing from the right (the envelope); the
    precision at recall threshold r is the envelope at the first detection with rc ≥ r
    (``searchsorted``), 0 past the last. The envelope is constant between two detections, so
    each detection fills the run of recall thresholds it reaches at once. A category without a
    non-ignored ground truth gets -1 (left out of the means).
    """
    n_cat, n_rec = len(npig), len(_RECALL)
    values: list[float] = []
    counts: list[int] = []
    tp, fp = [0] * n_cat, [0] * n_cat
    rc: list[list[float]] = [[] for _ in range(n_cat)]
    pr: list[list[float]] = [[] for _ in range(n_cat)]
    for d, k in enumerate(dt_cat):
        if not ignored >> d & 1:
            if matched >> d & 1:
                tp[k] += 1
            else:
                fp[k] += 1
        if npig[k]:
            rc[k].append(tp[k] / npig[k])
            pr[k].append(tp[k] / (fp[k] + tp[k] + _EPS))
    for k in range(n_cat):
        if not npig[k]:
            values.append(-1.0)
            counts.append(n_rec)
            continue
        envelope = pr[k]
        for i in range(len(envelope) - 2, -1, -1):
            if envelope[i + 1] > envelope[i]:
                envelope[i] = envelope[i + 1]
        filled = 0
        for value, recall in zip(envelope, rc[k], strict=True):
            reach = bisect_right(_RECALL, recall)
            if reach > filled:
                values.append(value)
                counts.append(reach - filled)
                filled = reach
        values.append(0.0)
        counts.append(n_rec - filled)
    return values, counts


def _mean(values: np.ndarray, complete: bool) -> float:
    """COCO's ``np.mean(s[s > -1])`` (-1 if empty); ``complete``: no -1 in ``values`` (no copy needed)."""
    kept = values.ravel() if complete else values[values > -1]
    return -1.0 if kept.size == 0 else float(np.add.reduce(kept) / kept.size)


def coco_map(
    pred_xyxy: np.ndarray,
    pred_labels: tuple[str, ...],
    gt_xyxy: np.ndarray,
    gt_labels: tuple[str, ...],
    iou: np.ndarray | None = None,
) -> MapScores:
    """mAP, mAP50, mAP75 of one image, every prediction with score 1.0.

    ``iou`` (P, G) may pass the IoU matrix of :func:`trainer.rewards.matching.pairwise_iou` when
    every coordinate is an integer below 2^24 (every product is then exact, and that formula
    gives COCO's IoU to the last bit); it is then reused.

    >>> gt = np.array([[0.0, 0, 10, 10]])
    >>> [round(v, 12) for v in vars(coco_map(gt, ("a",), gt, ("a",))).values()]  # 1 / (1 + 2^-52)
    [1.0, 1.0, 1.0]
    """
    detections = _Detections(pred_labels, gt_labels)
    kept = detections.kept
    if not kept:
        return ZERO
    if iou is not None:
        iou_rows = iou.tolist()
        rows = [iou_rows[i] for i in kept]
    else:
        dt_xyxy = pred_xyxy[kept]
        dt_wh, gt_wh = dt_xyxy[:, 2:] - dt_xyxy[:, :2], gt_xyxy[:, 2:] - gt_xyxy[:, :2]
        rows = coco_iou(np.hstack([dt_xyxy[:, :2], dt_wh]), np.hstack([gt_xyxy[:, :2], gt_wh])).tolist()
    gts_of: list[list[int]] = [[] for _ in range(detections.n_cat)]
    for g, k in enumerate(detections.gt_cat):
        gts_of[k].append(g)
    lowest = _THRESHOLD_LIST[0]
    per_dt = [
        [(g, row[g]) for g in gts_of[k] if row[g] >= lowest]
        for row, k in zip(rows, detections.dt_cat, strict=True)
    ]
    return _scores(per_dt, detections, pred_xyxy.tolist(), gt_xyxy.tolist())


def coco_map_pairs(
    pairs: Iterable[tuple[int, int, float]],
    pred_rows: Sequence[Sequence[float]],
    pred_labels: tuple[str, ...],
    gt_rows: Sequence[Sequence[float]],
    gt_labels: tuple[str, ...],
) -> MapScores:
    """:func:`coco_map` from the IoUs of the pairs that can match, without numpy's per-call costs.

    ``pairs``: (prediction, ground truth, IoU) for every pair of the same label whose IoU is
    ≥ 0.5, in prediction-major order (others may be there too: pairs below 0.5 are skipped),
    with COCO's IoU (:func:`trainer.rewards.matching.iou_pairs` gives it when every coordinate
    is an integer below 2^24). ``pred_rows``/``gt_rows``: the boxes, ``xyxy``.

    >>> box = [(0.0, 0, 10, 8)]  # IoU 0.8 with the ground truth: a TP for 7 of the 10 thresholds
    >>> round(coco_map_pairs([(0, 0, 0.8)], box, ("a",), [(0.0, 0, 10, 10)], ("a",)).map, 12)
    0.7
    """
    detections = _Detections(pred_labels, gt_labels)
    if not detections.kept:
        return ZERO
    slot = {i: d for d, i in enumerate(detections.kept)}
    per_dt: list[list[tuple[int, float]]] = [[] for _ in detections.kept]
    lowest = _THRESHOLD_LIST[0]
    for i, g, v in pairs:
        if v >= lowest:
            d = slot.get(i)
            if d is not None:
                per_dt[d].append((g, v))
    return _scores(per_dt, detections, pred_rows, gt_rows)


class _Detections:
    """Categories (the ground-truth labels, in order of first appearance) and COCO's detections:
    the predictions of a ground-truth label, at most 100 per category, in order."""

    __slots__ = ("gt_cat", "n_cat", "kept", "dt_cat")

    def __init__(self, pred_labels: Sequence[str], gt_labels: Sequence[str]) -> None:
        category_of: dict[str, int] = {}
        for label in gt_labels:
            if label not in category_of:
                category_of[label] = len(category_of)
        self.n_cat = len(category_of)
        self.gt_cat = [category_of[label] for label in gt_labels]
        seen = [0] * self.n_cat
        self.kept: list[int] = []  # prediction index of each detection
        self.dt_cat: list[int] = []
        for i, label in enumerate(pred_labels):
            k = category_of.get(label)
            if k is None or seen[k] >= MAX_DETECTIONS:
                continue
            self.kept.append(i)
            self.dt_cat.append(k)
            seen[k] += 1


def _outside(rows: Iterable[Sequence[float]]) -> list[bool]:
    """Boxes whose area (w · h, as V-Triune's ``convert_bbox_to_coco_format`` and ``loadRes``
    compute it) is outside COCO's area range."""
    low, high = AREA_RANGE
    return [not low <= (x2 - x1) * (y2 - y1) <= high for x1, y1, x2, y2 in rows]


def _scores(
    per_dt: list[list[tuple[int, float]]],
    detections: _Detections,
    pred_rows: Sequence[Sequence[float]],
    gt_rows: Sequence[Sequence[float]],
) -> MapScores:
    """The matching and the three means, from the candidate pairs of each detection."""
    gt_ignore = _outside(gt_rows)
    dt_out = _outside(pred_rows[i] for i in detections.kept)
    matched_rows, ignored_rows = _match(per_dt, gt_ignore)
    if any(dt_out):  # an unmatched detection outside the area range is ignored
        out = sum(1 << d for d, flag in enumerate(dt_out) if flag)
        ignored_rows = [
            ignored | (out & ~matched) for ignored, matched in zip(ignored_rows, matched_rows, strict=True)
        ]
    npig = [0] * detections.n_cat
    for k, ignored_gt in zip(detections.gt_cat, gt_ignore, strict=True):
        npig[k] += not ignored_gt
    dt_cat = detections.dt_cat
    if len(dt_cat) > _CACHED_DETECTIONS:
        return _accumulate.__wrapped__(matched_rows, ignored_rows, tuple(dt_cat), tuple(npig))
    return _accumulate(tuple(matched_rows), tuple(ignored_rows), tuple(dt_cat), tuple(npig))


@lru_cache(maxsize=16384)
def _accumulate(
    matched_rows: Sequence[int], ignored_rows: Sequence[int], dt_cat: tuple[int, ...], npig: tuple[int, ...]
) -> MapScores:
    """The three means from the matching; a function of these flags only, so it is cached: the
    same pattern (one detection matched up to IoU 0.8, say) comes back across responses."""
    blocks = _precision(matched_rows, ignored_rows, dt_cat, npig)
    table = np.concatenate([block for block, _ in blocks])  # (T, R, K) as (T·R, K), C order
    return MapScores(_mean(table, 0 not in npig), blocks[_T50][1], blocks[_T75][1])
