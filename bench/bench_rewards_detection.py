"""Detection reward: trainer.rewards vs a straightforward implementation calling pycocotools.

The baseline (the plain re-write in tests/unit/trainer/rewards/reference.py) writes V-Triune's
formulas the plain way (as ``reward_server/verify.py`` and
``utils/det_helper.py`` do: Python loops over box pairs, one matching per threshold and
strategy, ``COCO``/``COCOeval`` per sample), with the best-pair IoU-first matching. Both score
the same synthetic responses with every logged component; the script checks that every
component is identical and prints the time per sample of each and the speed-up.

    python bench/bench_rewards_detection.py [--samples 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The baseline is the plain re-write of V-Triune's formulas that the equivalence tests use.
from tests.unit.trainer.rewards.reference import (  # noqa: E402
    RATIO_KEYS,
    THRESHOLDS,
    answer_content,
    greedy_match_iou_first,
    greedy_match_label_first,
    iou_score,
    map_scores,
)
from tests.unit.trainer.rewards.reference import extract_bbox as parse_boxes  # noqa: E402
from trainer.rewards import compute_reward  # noqa: E402

LABELS = ["dog", "cat", "person", "car", "bicycle", "traffic light"]


# --- baseline: the formulas written the straightforward way, composed per sample ----------------


def match_score(matches, n_pred, n_gt, w_c):
    score = iou_score(matches, n_pred, n_gt, w_c)
    return {
        "pure": score["mean_iou_score"],
        "precision": score["precision"],
        "recall": score["recall"],
        "weighted": score["weighted_iou_score"],
    }


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
            for name, matcher in (("iou", greedy_match_iou_first), ("label", greedy_match_label_first))
        }
        ratio = step / total_steps
        eps = 0.85 if ratio <= 0.1 else 0.95 if ratio <= 0.25 else 0.99
        maps = map_scores(pred, gt)
        m, m50, m75 = maps["map"], maps["map50"], maps["map75"]
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
