"""Detection reward: trainer.rewards vs a straightforward implementation calling pycocotools.

The baseline below writes V-Triune's formulas the plain way (as ``reward_server/verify.py`` and
``utils/det_helper.py`` do: Python loops over box pairs, one matching per threshold and
strategy, ``COCO``/``COCOeval`` per sample), with the best-pair IoU-first matching. Both score
the same synthetic responses with every logged component; the script checks that every
component is identical and prints the time per sample of each and the speed-up.

    python bench/bench_rewards_detection.py [--samples 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import re
import time

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from trainer.rewards import compute_reward

THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]
RATIO_KEYS = ["iou_max_label_first", "iou_max_iou_first", "iou_completeness", "map", "map50", "map75"]
LABELS = ["dog", "cat", "person", "car", "bicycle", "traffic light"]


# --- baseline: the formulas written the straightforward way ------------------------------------
def answer_content(text):
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else ""


def parse_boxes(text):
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
            and all(isinstance(c, int | float) and abs(c) != float("inf") for c in item["bbox_2d"])
            and item["bbox_2d"][0] <= item["bbox_2d"][2]
            and item["bbox_2d"][1] <= item["bbox_2d"][3]
            and isinstance(item["label"], str)
        ):
            key = tuple(item["bbox_2d"])
            if key not in seen:
                seen.add(key)
                kept.append(item)
    return kept or None


def iou_of(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    inter = (x2 - x1) * (y2 - y1)
    return float(inter) / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_iou_first(pred, gt, threshold):
    ious = [[iou_of(p["bbox_2d"], g["bbox_2d"]) for g in gt] for p in pred]
    free_p, free_g, matches = list(range(len(pred))), list(range(len(gt))), []
    while free_p and free_g:
        best, bi, bj = -1, -1, -1
        for i in free_p:
            for j in free_g:
                if ious[i][j] > best:
                    best, bi, bj = ious[i][j], i, j
        if best < threshold:
            break
        matches.append(best if pred[bi]["label"].lower() == gt[bj]["label"].lower() else 0.0)
        free_p.remove(bi)
        free_g.remove(bj)
    return matches


def match_label_first(pred, gt, threshold):
    matches, taken = [], set()
    for g in gt:
        options = [
            (iou_of(p["bbox_2d"], g["bbox_2d"]), i)
            for i, p in enumerate(pred)
            if i not in taken and p["label"].lower() == g["label"].lower()
        ]
        if not options:
            continue
        best = max(v for v, _ in options)
        index = next(i for v, i in options if v == best)
        if best >= threshold:
            matches.append(best)
            taken.add(index)
    return matches


def match_score(matches, n_pred, n_gt, w_c):
    mean_iou = sum(matches) / n_gt if matches else 0.0
    miss = (n_gt - len(matches)) / n_gt
    false_alarm = 0.0 if n_pred == 0 else (n_pred - len(matches)) / n_pred
    completeness = 1.0 - (miss + false_alarm) / 2.0
    weighted = mean_iou * (1.0 - w_c) + completeness * w_c
    return {"pure": mean_iou, "precision": 1 - false_alarm, "recall": 1 - miss, "weighted": weighted}


def map_scores(pred, gt):
    dataset = {"images": [{"id": 0}], "annotations": [], "categories": []}
    cats = {}
    for n, g in enumerate(gt):
        if g["label"] not in cats:
            cats[g["label"]] = len(cats)
            dataset["categories"].append({"id": cats[g["label"]], "name": g["label"]})
        x1, y1, x2, y2 = g["bbox_2d"]
        dataset["annotations"].append(
            {"id": n + 1, "image_id": 0, "category_id": cats[g["label"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
        )  # fmt: skip
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
        return 0.0, 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1]), float(evaluator.stats[2])


def baseline_reward(response, reward_model, step, total_steps, image_size):
    parm = reward_model.get("verifier_parm") or {}
    ratios = {key: float(parm["det_reward_ratio"].get(key, 0.0)) for key in RATIO_KEYS}
    keys = [
        "size_penalty", "pure_iou_score_max_iou", "pure_iou_score_max_label", "pure_map_score",
        "pure_map50_score", "pure_map75_score", "weighted_iou_score_max_iou", "weighted_iou_score_max_label",
        "weighted_map_score", "weighted_map50_score", "weighted_map75_score",
    ] + [f"report_iou_{t}_iou_match_{p}" for t in (50, 95) for p in ("pure", "precision", "recall")] + [
        f"report_iou_{t}_label_match_{p}" for t in (50, 75, 95, 99) for p in ("pure", "precision", "recall")
    ]  # fmt: skip
    out = dict.fromkeys(keys, 0.0)
    pred = parse_boxes(answer_content(response.strip()).lower())
    fmt = 1.0 if response.count("\n<answer>\n") and response.count("\n</answer>") == 1 and pred else 0.0
    gt = parse_boxes(answer_content(reward_model["ground_truth"].strip()).lower())
    accuracy = 0.0
    if pred and parm.get("det_verifier_normalized"):
        width, height = image_size
        for p in pred:
            x1, y1, x2, y2 = p["bbox_2d"]
            p["bbox_2d"] = [int(x1 / width * 1000.0), int(y1 / height * 1000.0),
                            int(x2 / width * 1000.0), int(y2 / height * 1000.0)]  # fmt: skip
    if pred:
        penalty = 0.6 ** abs(len(pred) - len(gt))
        w_c = ratios["iou_completeness"]
        scores = {
            name: {t: match_score(matcher(pred, gt, t), len(pred), len(gt), w_c) for t in THRESHOLDS}
            for name, matcher in (("iou", match_iou_first), ("label", match_label_first))
        }
        ratio = step / total_steps
        eps = 0.85 if ratio <= 0.1 else 0.95 if ratio <= 0.25 else 0.99
        m, m50, m75 = map_scores(pred, gt)
        pure = {
            "iou_max_iou_first": scores["iou"][eps]["weighted"],
            "iou_max_label_first": scores["label"][eps]["weighted"],
            "map": m, "map50": m50, "map75": m75,
        }  # fmt: skip
        names = {"iou_max_iou_first": "iou_score_max_iou", "iou_max_label_first": "iou_score_max_label",
                 "map": "map_score", "map50": "map50_score", "map75": "map75_score"}  # fmt: skip
        for key, name in names.items():
            out[f"pure_{name}"] = pure[key]
            out[f"weighted_{name}"] = pure[key] * penalty
        out["size_penalty"] = penalty
        for name, report in (("iou", (50, 95)), ("label", (50, 75, 95, 99))):
            for t in report:
                for part in ("pure", "precision", "recall"):
                    out[f"report_iou_{t}_{name}_match_{part}"] = scores[name][t / 100][part]
        norm = sum(ratios[k] for k in ("iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75"))
        accuracy = sum(out[f"weighted_{names[k]}"] * ratios[k] for k in names) / norm
    a, f = reward_model.get("accuracy_ratio", 1.0), reward_model.get("format_ratio", 0.1)
    rewards = {"accuracy_reward": accuracy, "format_reward": fmt}
    rewards.update({f"{key}_reward": value for key, value in out.items()})
    rewards["final_reward"] = accuracy * (a / (a + f)) + fmt * (f / (a + f))
    return rewards


# --- synthetic samples ---------------------------------------------------------------------------
def make_samples(n, seed):
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        n_gt = rng.choice([1, 1, 1, 2, 3, 4, 6])
        gt = []
        for _ in range(n_gt):
            x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
            gt.append({"bbox_2d": [x1, y1, x1 + rng.randint(10, 199), y1 + rng.randint(10, 199)],
                       "label": rng.choice(LABELS[: rng.randint(1, 4)])})  # fmt: skip
        truth = "<answer>\n" + str(gt) + "\n</answer>"
        normalized = rng.random() < 0.15
        size = (rng.randint(300, 1400), rng.randint(300, 1400))
        pred = []
        for g in gt:
            if rng.random() < 0.85:
                box = [c + rng.randint(-12, 12) for c in g["bbox_2d"]]
                box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
                if rng.random() < 0.3:
                    box = list(g["bbox_2d"])
                label = g["label"] if rng.random() < 0.9 else rng.choice(LABELS)
                pred.append({"bbox_2d": box, "label": label})
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            x1, y1 = rng.randint(0, 900), rng.randint(0, 900)
            pred.append({"bbox_2d": [x1, y1, x1 + rng.randint(5, 99), y1 + rng.randint(5, 99)],
                         "label": rng.choice(LABELS)})  # fmt: skip
        if normalized:
            for p in pred:
                p["bbox_2d"] = [round(c * size[i % 2] / 1000) for i, c in enumerate(p["bbox_2d"])]
        body = str(pred)
        if rng.random() < 0.05:
            body = body[: len(body) * 2 // 3]  # truncated list
        response = f"<think>\nThe objects are visible.\n</think>\n<answer>\n{body}\n</answer>"
        if rng.random() < 0.05:
            response = "I cannot see anything."
        reward_model = {
            "verifier": "detection",
            "ground_truth": truth,
            "accuracy_ratio": 1.0,
            "format_ratio": 0.1,
            "verifier_parm": {
                "det_verifier_normalized": normalized,
                "det_reward_ratio": {
                    "iou_max_label_first": 1.0,
                    "iou_max_iou_first": 0.0,
                    "iou_completeness": 0.3,
                    "map": 0.0,
                    "map50": 0.0,
                    "map75": 0.0,
                },
            },  # fmt: skip
        }
        samples.append((response, reward_model, rng.randint(0, 99), 100, size))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    samples = make_samples(args.samples, args.seed)
    for response, model, step, total, size in samples[:20]:  # warm both up
        baseline_reward(response, model, step, total, size)
        compute_reward(response, model, step=step, total_steps=total, image_size=size)

    start = time.process_time()
    theirs = [baseline_reward(r, m, s, t, z) for r, m, s, t, z in samples]
    t_base = time.process_time() - start
    start = time.process_time()
    ours = [compute_reward(r, m, step=s, total_steps=t, image_size=z) for r, m, s, t, z in samples]
    t_ours = time.process_time() - start

    worst, differing = 0.0, 0
    for a, b in zip(theirs, ours, strict=True):
        assert set(a) == set(b), set(a) ^ set(b)
        diff = max(abs(a[k] - b[k]) for k in a)
        worst = max(worst, diff)
        differing += diff > 0
    print(f"samples: {len(samples)}, reward keys: {len(ours[0])}")
    print(f"identical: {len(samples) - differing}/{len(samples)} samples (largest difference {worst:.3g})")
    print(f"baseline (pure Python + pycocotools): {t_base / len(samples) * 1e6:8.1f} us/sample")
    print(f"trainer.rewards:                      {t_ours / len(samples) * 1e6:8.1f} us/sample")
    print(f"speed-up: {t_base / t_ours:.1f}x")


if __name__ == "__main__":
    main()
