"""The monitor on what ``trainer.rewards.compute_reward`` really returns."""

from __future__ import annotations

import pytest

from trainer.monitor import SampleRecord, doc_key_of, eval_metrics, sample_metrics

try:
    from trainer.rewards import compute_reward
except ImportError:
    compute_reward = None

pytestmark = pytest.mark.skipif(compute_reward is None, reason="trainer.rewards is not in this tree")

BOX = "[{'bbox_2d': [100, 100, 500, 500], 'label': 'dog'}]"
DETECTION = {
    "ground_truth": f"<answer>\n{BOX}\n</answer>",
    "verifier": "detection",
    "verifier_parm": {
        "det_verifier_normalized": False,
        "det_reward_ratio": {
            "iou_max_label_first": 1.0,
            "iou_max_iou_first": 0.0,
            "iou_completeness": 0.3,
            "map": 0.0,
            "map50": 0.0,
            "map75": 0.0,
        },
    },
}
MATH = {"ground_truth": "\\boxed{4}", "verifier": "mathverify"}


def scored(source: str, response: str, reward_model: dict, length: int = 20) -> SampleRecord:
    rewards = compute_reward(response, reward_model, step=0, total_steps=10)
    return SampleRecord(source, reward_model["verifier"], rewards, response, length, False)


def test_a_perfect_box_and_a_right_answer() -> None:
    records = [
        scored("det", f"<think>\nthe dog\n</think>\n<answer>\n{BOX}\n</answer>", DETECTION),
        scored("math", "<think>\nwait, 2+2\n</think>\n<answer>\n\\boxed{4}\n</answer>", MATH),
        scored("math", "<think>\nhm\n</think>\n<answer>\n\\boxed{5}\n</answer>", MATH),
    ]
    metrics = sample_metrics(records)
    for t in (50, 75, 95, 99):  # one predicted box equal to the one ground-truth box
        assert metrics[("det", f"detection/iou@{t}")] == pytest.approx(1.0)
        assert metrics[("det", f"detection/precision@{t}")] == pytest.approx(1.0)
        assert metrics[("det", f"detection/recall@{t}")] == pytest.approx(1.0)
    for name in ("map", "map50", "map75"):
        assert metrics[("det", f"detection/{name}")] == pytest.approx(1.0)
    assert metrics[("det", "reward/accuracy")] == pytest.approx(1.0)
    assert metrics[("math", "reward/accuracy")] == pytest.approx(0.5)  # (1 + 0) / 2
    assert metrics[("math", "reflection/correct_in_reflective")] == 1.0  # the right one says "wait"
    assert not any(k.startswith("detection/") for s, k in metrics if s == "math")
    for _, key in {**metrics, **eval_metrics(records)}:
        doc_key_of(key)  # every key the real rewards produce is documented
