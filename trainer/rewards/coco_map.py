"""COCO box mAP of one image, equal to pycocotools' ``COCOeval`` (stats[0], [1], [2]).

The detection reward scores one image at a time with every prediction at confidence 1.0
(V-Triune's ``pack_for_map_score``). Running ``COCO``/``COCOeval`` for that costs milliseconds
of Python bookkeeping; this module computes the same three numbers with numpy, following
``cocoeval.py`` step for step (one category at a time, all ten IoU thresholds at once):

- categories are the ground-truth labels; predictions of other labels are dropped (no
  prediction left → all three are 0, as in V-Triune);
- per category: predictions in order (equal scores keep their order under COCO's stable sort),
  at most 100; a ground truth outside the area range [0, 1e10] is ignored; each prediction takes
  the unmatched ground truth of highest IoU ≥ t (ties: the later one), non-ignored first;
- precision at the 101 recall thresholds from the cumulative TP/FP, made monotone;
- mAP = mean of precision over categories with a non-ignored ground truth, thresholds and
  recall points; mAP50 and mAP75 the same at t = 0.5 and 0.75; -1 when no category counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# pycocotools' Params for bbox evaluation (computed the same way, so equality tests find 0.75).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100
AREA_RANGE = (0.0**2, 1e5**2)
_MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
_T50 = int(np.where(IOU_THRESHOLDS == 0.5)[0][0])
_T75 = int(np.where(IOU_THRESHOLDS == 0.75)[0][0])


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
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    union = (dt_xywh[:, 2] * dt_xywh[:, 3])[:, None] + (gt_xywh[:, 2] * gt_xywh[:, 3])[None, :] - inter
    out = np.zeros(overlap.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=overlap)
    return out


def _match(
    ious: np.ndarray, same_category: np.ndarray, gt_ignore: np.ndarray
) -> tuple[list[list[bool]], list[list[bool]]]:
    """``evaluateImg``'s greedy matching at the ten IoU thresholds: dtMatches > 0 and dtIgnore.

    ``ious`` (D, G) of the kept detections (in order) against every ground truth,
    ``same_category`` (D, G), ``gt_ignore`` (G,). Each detection in turn takes the free ground
    truth of its category with the highest IoU ≥ t, the last one on ties (``cocoeval.py`` keeps
    a candidate whose IoU is ≥ the best so far), non-ignored ones first (COCO sorts them first
    and stops at the first ignored one once it has a match). Only pairs with IoU ≥ 0.5, the
    lowest threshold, can match, so only those are visited: usually one or two per detection.
    Returns two lists of T rows of D flags.
    """
    n_dt = ious.shape[0]
    candidate = same_category & (ious >= _MATCH_THRESHOLDS[0])
    dts, gts = np.nonzero(candidate)
    values = ious[dts, gts].tolist()
    ignore = gt_ignore.tolist()
    per_dt: list[list[tuple[int, float]]] = [[] for _ in range(n_dt)]
    for d, g, v in zip(dts.tolist(), gts.tolist(), values, strict=True):
        per_dt[d].append((g, v))
    if any(ignore):  # COCO's order: non-ignored ground truths first, each group in id order
        per_dt = [sorted(pairs, key=lambda pair: ignore[pair[0]]) for pairs in per_dt]
    matched_rows, ignored_rows = [], []
    for t in _MATCH_THRESHOLDS.tolist():
        taken: set[int] = set()
        matched = [False] * n_dt
        ignored = [False] * n_dt
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
                matched[d] = True
                ignored[d] = ignore[best]
        matched_rows.append(matched)
        ignored_rows.append(ignored)
    return matched_rows, ignored_rows


def _precision(matched: np.ndarray, ignored: np.ndarray, n_dt: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """``accumulate`` for one image: precision at each (IoU, recall) threshold and category (T, R, K).

    ``matched``/``ignored`` (T, K, D) with padding after the ``n_dt`` (K,) real detections
    (marked ignored); ``npig`` (K,) non-ignored ground truths. A category without any gets -1.
    """
    tp = np.cumsum(matched & ~ignored, axis=2).astype(float)
    fp = np.cumsum(~matched & ~ignored, axis=2).astype(float)
    width = tp.shape[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = tp / npig[None, :, None]
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]  # precision envelope
    real = np.arange(width)[None, :] < n_dt[:, None]  # (K, D)
    # searchsorted(rc, recThrs, "left") over the real detections: rc is non-decreasing there.
    index = ((rc[..., None] < RECALL_THRESHOLDS) & real[None, :, :, None]).sum(axis=2)  # (T, K, R)
    picked = np.take_along_axis(pr, np.minimum(index, width - 1), axis=2)
    q = np.where(index < n_dt[None, :, None], picked, 0.0)  # (T, K, R)
    q[:, npig == 0, :] = -1.0
    return q.transpose(0, 2, 1)


def _mean(values: np.ndarray) -> float:
    kept = values[values > -1]
    return -1.0 if kept.size == 0 else float(np.mean(kept))


def _exact_integers(*arrays: np.ndarray) -> bool:
    """Integer coordinates small enough that every box product is exact in float64."""
    return all(bool(np.all((np.abs(a) < 2**24) & (a == np.floor(a)))) for a in arrays)


def coco_map(
    pred_xyxy: np.ndarray,
    pred_labels: tuple[str, ...],
    gt_xyxy: np.ndarray,
    gt_labels: tuple[str, ...],
    iou: np.ndarray | None = None,
) -> MapScores:
    """mAP, mAP50, mAP75 of one image, every prediction with score 1.0.

    ``iou`` (P, G) may pass the IoU matrix of :func:`trainer.rewards.matching.pairwise_iou`: on
    integer coordinates it equals COCO's to the last bit and is reused.

    >>> gt = np.array([[0.0, 0, 10, 10]])
    >>> [round(v, 12) for v in vars(coco_map(gt, ("a",), gt, ("a",))).values()]  # 1 / (1 + 2^-52)
    [1.0, 1.0, 1.0]
    """
    category_of: dict[str, int] = {}
    for label in gt_labels:
        category_of.setdefault(label, len(category_of))
    n_cat = len(category_of)
    gt_cat = np.array([category_of[label] for label in gt_labels], dtype=np.int64)
    # Detections: predictions of a ground-truth label, at most 100 per category, in order.
    seen = [0] * n_cat
    kept, dt_cat_list, slot_list = [], [], []
    for i, label in enumerate(pred_labels):
        k = category_of.get(label)
        if k is None or seen[k] >= MAX_DETECTIONS:
            continue
        kept.append(i)
        dt_cat_list.append(k)
        slot_list.append(seen[k])
        seen[k] += 1
    if not kept:
        return ZERO
    dt_index = np.array(kept, dtype=np.int64)
    dt_cat = np.array(dt_cat_list, dtype=np.int64)
    dt_slot = np.array(slot_list, dtype=np.int64)
    n_dt = np.array(seen, dtype=np.int64)

    # COCO's [x, y, w, h] and area, computed as V-Triune's convert_bbox_to_coco_format does.
    gt_wh = gt_xyxy[:, 2:] - gt_xyxy[:, :2]
    gt_area = gt_wh[:, 0] * gt_wh[:, 1]
    dt_xyxy = pred_xyxy[dt_index]
    dt_wh = dt_xyxy[:, 2:] - dt_xyxy[:, :2]
    dt_area = dt_wh[:, 0] * dt_wh[:, 1]  # loadRes: area = w · h
    if iou is not None and _exact_integers(dt_xyxy, gt_xyxy):
        ious = iou[dt_index]
    else:
        ious = coco_iou(
            np.concatenate([dt_xyxy[:, :2], dt_wh], 1), np.concatenate([gt_xyxy[:, :2], gt_wh], 1)
        )
    gt_ignore = (gt_area < AREA_RANGE[0]) | (gt_area > AREA_RANGE[1])
    matched_rows, ignored_rows = _match(ious, dt_cat[:, None] == gt_cat[None, :], gt_ignore)

    # Scatter (T, D) into per-category rows (T, K, width), detections left-aligned.
    width = int(n_dt.max())
    matched = np.zeros((len(_MATCH_THRESHOLDS), n_cat, width), dtype=bool)
    ignored = np.ones((len(_MATCH_THRESHOLDS), n_cat, width), dtype=bool)  # padding is ignored
    matched[:, dt_cat, dt_slot] = matched_rows
    dt_out = (dt_area < AREA_RANGE[0]) | (dt_area > AREA_RANGE[1])
    ignored[:, dt_cat, dt_slot] = np.array(ignored_rows) | (~np.array(matched_rows) & dt_out)
    npig = np.bincount(gt_cat[~gt_ignore], minlength=n_cat)
    precision = _precision(matched, ignored, n_dt, npig)  # (T, R, K)
    return MapScores(_mean(precision), _mean(precision[_T50]), _mean(precision[_T75]))
