"""V-Triune's released detection and math rewards, re-written plainly for equivalence tests.

Loops over box pairs, one matching per threshold and strategy, pycocotools' ``COCOeval`` per
sample, exactly as ``reward_server/verify.py`` and ``reward_server/utils/det_helper.py`` of
MiniMax-AI/One-RL-to-See-Them-All compute them, with two differences the library makes on
purpose: the IoU-first matcher keeps the best pair (the released one keeps the last pair it
scanned), and a non-finite coordinate makes a box invalid.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import math_verify
from latex2sympy2_extended import NormalizationConfig
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]
RATIO_KEYS = ["iou_max_label_first", "iou_max_iou_first", "iou_completeness", "map", "map50", "map75"]


def answer_content(text):
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else ""


def extract_bbox(text):
    if not text or not text.strip():
        return None
    text = text.replace("[[", "[").replace("]]", "]")
    if not text.endswith("]"):
        text = text.rsplit("},", 1)[0] + "}]"
    text = text.replace("'", '"').replace("\\", "")
    try:
        items = json.loads(text)
    except Exception:
        return None
    if not isinstance(items, list):
        return None
    kept, seen = [], set()
    for item in items:
        if (
            isinstance(item, dict)
            and "bbox_2d" in item
            and "label" in item
            and isinstance(item["bbox_2d"], list)
            and len(item["bbox_2d"]) == 4
            and all(isinstance(c, int | float) for c in item["bbox_2d"])
            and all(math.isfinite(c) for c in item["bbox_2d"])
            and item["bbox_2d"][0] <= item["bbox_2d"][2]
            and item["bbox_2d"][1] <= item["bbox_2d"][3]
            and isinstance(item["label"], str)
        ):
            key = tuple(item["bbox_2d"])
            if key not in seen:
                seen.add(key)
                kept.append(item)
    return kept or None


def compute_iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    inter = (x2 - x1) * (y2 - y1)
    return float(inter) / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def greedy_match_iou_first(pred, gt, threshold):
    ious = [[compute_iou(p["bbox_2d"], g["bbox_2d"]) for g in gt] for p in pred]
    free_p, free_g, matches = list(range(len(pred))), list(range(len(gt))), []
    while free_p and free_g:
        best, bi, bj = -1, -1, -1
        for i in free_p:
            for j in free_g:
                if ious[i][j] > best:
                    best, bi, bj = ious[i][j], i, j
        if best < threshold:
            break
        same = pred[bi]["label"].lower() == gt[bj]["label"].lower()
        matches.append({"pred_idx": bi, "gt_idx": bj, "iou": best if same else 0.0})
        free_p.remove(bi)
        free_g.remove(bj)
    return matches


def greedy_match_label_first(pred, gt, threshold):
    matches, taken = [], set()
    for j, g in enumerate(gt):
        options = [
            (compute_iou(p["bbox_2d"], g["bbox_2d"]), i)
            for i, p in enumerate(pred)
            if i not in taken and p["label"].lower() == g["label"].lower()
        ]
        if not options:
            continue
        best = max(v for v, _ in options)
        index = next(i for v, i in options if v == best)
        if best >= threshold:
            matches.append({"pred_idx": index, "gt_idx": j, "iou": best})
            taken.add(index)
    return matches


def iou_score(matches, n_pred, n_gt, w_c):
    mean_iou = sum(m["iou"] for m in matches) / n_gt if matches else 0.0
    miss = (n_gt - len(matches)) / n_gt
    false_alarm = 0.0 if n_pred == 0 else (n_pred - len(matches)) / n_pred
    completeness = 1.0 - (miss + false_alarm) / 2.0
    return {
        "mean_iou_score": mean_iou,
        "precision": 1 - false_alarm,
        "recall": 1 - miss,
        "weighted_iou_score": mean_iou * (1.0 - w_c) + completeness * w_c,
    }


def map_scores(pred, gt):
    """pycocotools' COCOeval of one image, as V-Triune's pack_for_map_score calls it."""
    dataset = {"images": [{"id": 0}], "annotations": [], "categories": []}
    cats: dict[str, int] = {}
    for n, g in enumerate(gt):
        if g["label"] not in cats:
            cats[g["label"]] = len(cats)
            dataset["categories"].append({"id": cats[g["label"]], "name": g["label"]})
        x1, y1, x2, y2 = g["bbox_2d"]
        dataset["annotations"].append(
            {
                "id": n + 1,
                "image_id": 0,
                "category_id": cats[g["label"]],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    results = []
    for p in pred:
        if p["label"] in cats:
            x1, y1, x2, y2 = p["bbox_2d"]
            results.append(
                {
                    "image_id": 0,
                    "category_id": cats[p["label"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 1.0,
                }
            )
    if not results:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {
        "map": float(evaluator.stats[0]),
        "map50": float(evaluator.stats[1]),
        "map75": float(evaluator.stats[2]),
    }


def detection_format(response):
    if response.count("\n<answer>\n") and response.count("\n</answer>") == 1:
        return 1.0 if extract_bbox(answer_content(response.strip()).lower()) else 0.0
    return 0.0


def detection_accuracy(response, solution, ratios, select_iou, image_size=None):
    """``DetectionVerifier.verify_accuracy``: the breakdown dict (keys without ``_reward``)."""
    names = [
        "final_score", "size_penalty", "pure_iou_score_max_iou", "pure_iou_score_max_label", "pure_map_score",
        "pure_map50_score", "pure_map75_score", "weighted_iou_score_max_iou", "weighted_iou_score_max_label",
        "weighted_map_score", "weighted_map50_score", "weighted_map75_score",
    ] + [f"report_iou_{t}_iou_match_{p}" for t in (50, 95) for p in ("pure", "precision", "recall")] + [
        f"report_iou_{t}_label_match_{p}" for t in (50, 75, 95, 99) for p in ("pure", "precision", "recall")
    ]  # fmt: skip
    out = dict.fromkeys(names, 0.0)
    ratios = {key: float(ratios.get(key, 0.0)) for key in RATIO_KEYS}
    pred = extract_bbox(answer_content(response.strip()).lower())
    gt = extract_bbox(answer_content(solution.strip()).lower())
    if pred is None or gt is None:
        return out
    if image_size is not None:
        width, height = image_size
        for p in pred:
            x1, y1, x2, y2 = p["bbox_2d"]
            p["bbox_2d"] = [
                int(x1 / width * 1000.0), int(y1 / height * 1000.0),
                int(x2 / width * 1000.0), int(y2 / height * 1000.0),
            ]  # fmt: skip
    penalty = 0.6 ** abs(len(pred) - len(gt))
    w_c = ratios["iou_completeness"]
    scores = {
        name: {t: iou_score(match(pred, gt, t), len(pred), len(gt), w_c) for t in THRESHOLDS}
        for name, match in (("iou", greedy_match_iou_first), ("label", greedy_match_label_first))
    }
    for name in ("iou", "label"):
        scores[name]["average"] = {
            "weighted_iou_score": sum(scores[name][t]["weighted_iou_score"] for t in THRESHOLDS)
            / len(THRESHOLDS)
        }
    maps = map_scores(pred, gt)
    pure = {
        "iou_max_iou_first": scores["iou"][select_iou]["weighted_iou_score"],
        "iou_max_label_first": scores["label"][select_iou]["weighted_iou_score"],
        "map": maps["map"],
        "map50": maps["map50"],
        "map75": maps["map75"],
    }
    key_names = {
        "iou_max_iou_first": "iou_score_max_iou",
        "iou_max_label_first": "iou_score_max_label",
        "map": "map_score",
        "map50": "map50_score",
        "map75": "map75_score",
    }
    for key, name in key_names.items():
        out[f"pure_{name}"] = pure[key]
        out[f"weighted_{name}"] = pure[key] * penalty
    out["size_penalty"] = penalty
    for name, report in (("iou", (50, 95)), ("label", (50, 75, 95, 99))):
        for t in report:
            entry = scores[name][t / 100]
            out[f"report_iou_{t}_{name}_match_pure"] = entry["mean_iou_score"]
            out[f"report_iou_{t}_{name}_match_precision"] = entry["precision"]
            out[f"report_iou_{t}_{name}_match_recall"] = entry["recall"]
    norm = (
        ratios["iou_max_iou_first"]
        + ratios["iou_max_label_first"]
        + ratios["map"]
        + ratios["map50"]
        + ratios["map75"]
    )
    out["final_score"] = (
        (
            out["weighted_iou_score_max_iou"] * ratios["iou_max_iou_first"]
            + out["weighted_iou_score_max_label"] * ratios["iou_max_label_first"]
            + out["weighted_map_score"] * ratios["map"]
            + out["weighted_map50_score"] * ratios["map50"]
            + out["weighted_map75_score"] * ratios["map75"]
        )
        / norm
        if norm > 0
        else 0.0
    )
    return out


def dynamic_iou(step, total_steps):
    ratio = float(step) / float(total_steps)
    return 0.85 if ratio <= 0.1 else 0.95 if ratio <= 0.25 else 0.99


def math_accuracy(response, solution):
    """``MathVerifyVerifier.verify_accuracy`` (math-verify's own timeouts on: main thread only)."""
    response, solution = response.lower(), solution.lower()
    gold = math_verify.parse(solution, extraction_mode="first_match")
    if not gold:
        return 0.0
    pred = math_verify.parse(
        response,
        extraction_config=[
            math_verify.LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ],
        extraction_mode="first_match",
    )
    try:
        return float(math_verify.verify(gold, pred))
    except Exception:
        return 0.0


def math_format(text):
    return sum(
        0.25 for tag in ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>") if text.count(tag) == 1
    )
