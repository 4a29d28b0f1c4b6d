"""The key table, global metrics (IoU threshold, update pass-through, perf) and the NaN rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import trainer.monitor as monitor
from trainer.monitor import (
    METRIC_DOCS,
    SampleRecord,
    Timer,
    describe,
    detection_table,
    doc_key_of,
    dynamic_sampling_metrics,
    eval_metrics,
    finalize,
    length_drift_metrics,
    peak_rss_bytes,
    perf_metrics,
    render_metrics_markdown,
    sample_metrics,
    update_length_baselines,
    update_metrics,
)


def rich_batch() -> list[SampleRecord]:
    det = {f"{k}": 0.5 for k in detection_table()} | {
        "accuracy_reward": 0.3,
        "format_reward": 1.0,
        "final_reward": 0.4,
        "iou_max_label_first_reward": 0.3,
    }
    math_ok = {"accuracy_reward": 1.0, "format_reward": 1.0, "final_reward": 1.0}
    math_bad = {"accuracy_reward": 0.0, "format_reward": 0.5, "final_reward": 0.05}
    return [
        SampleRecord("det", "detection", det, "wait, yet", 12, True, group=0, advantage=0.0),
        SampleRecord("math", "mathverify", math_ok, "verify", 3, False, group=1, advantage=0.7),
        SampleRecord("math", "mathverify", math_bad, "", 9, True, True, group=1, advantage=-0.7),
    ]


def test_every_emitted_key_is_documented() -> None:
    records = rich_batch()
    emitted = {k for _, k in sample_metrics(records)} | {k for _, k in eval_metrics(records)}
    emitted |= {
        k
        for _, k in perf_metrics(
            step_time=1.0,
            rollout_time=0.5,
            reward_time=0.1,
            update_time=0.3,
            num_tokens=100,
            peak_memory_bytes=1 << 30,
        )
    }
    emitted |= {k for _, k in update_metrics({"actor/pg_loss": 0.1, "grad_norm/vision.0": 1.0})}
    emitted |= {k for _, k in length_drift_metrics(records, update_length_baselines({}, records))}
    emitted |= {k for _, k in dynamic_sampling_metrics({"math": 1}, {"det": 1})}
    emitted.add("detection/iou_threshold")
    for key in emitted:
        doc_key_of(key)  # raises for an undocumented key
    # and every documented family shows up in a rich batch
    families = {doc_key_of(k) for k in emitted}
    assert {
        d for d in METRIC_DOCS if not d.startswith("actor/") and d != "grad_norm/<layer>"
    } - families == set()


def test_detection_table_covers_the_documented_detection_keys() -> None:
    targets = set(detection_table().values())
    assert {doc_key_of(t) for t in targets} == {
        "detection/iou@<t>",
        "detection/precision@<t>",
        "detection/recall@<t>",
        "detection/map",
        "detection/map50",
        "detection/map75",
    }
    assert len(targets) == 4 * 3 + 3  # iou, precision, recall at 50/75/95/99, and three mAPs
    assert all(k.endswith("_reward") for k in detection_table())


@pytest.mark.parametrize(
    ("key", "doc_key"),
    [
        ("reward/accuracy", "reward/<component>"),
        ("reward/iou_max_label_first", "reward/<component>"),
        ("detection/iou@75", "detection/iou@<t>"),
        ("detection/recall@99", "detection/recall@<t>"),
        ("reflection_word/check_again", "reflection_word/<word>"),
        ("grad_norm/language.11", "grad_norm/<layer>"),
        ("eval/final", "eval/<component>"),
        ("count", "count"),
    ],
)
def test_doc_key_of(key: str, doc_key: str) -> None:
    assert doc_key_of(key) == doc_key


@pytest.mark.parametrize(
    "key", ["detection/iou@60", "reflection_word/hmm", "reward/", "actor/foo", "Reward/x"]
)
def test_undocumented_keys_raise(key: str) -> None:
    with pytest.raises(KeyError, match="not documented"):
        doc_key_of(key)


def test_scopes() -> None:
    assert describe("detection/iou_threshold").scope == "global"
    assert describe("reward/final").scope == "source"
    assert describe("eval/accuracy").scope == "eval"


def test_metrics_md_is_in_sync_with_the_table() -> None:
    path = Path(monitor.__file__).with_name("METRICS.md")
    assert path.read_text(encoding="utf-8") == render_metrics_markdown(), (
        "regenerate with: python -m trainer.monitor > trainer/monitor/METRICS.md"
    )
    assert render_metrics_markdown().count("\n| `") == len(METRIC_DOCS)


# -- the one NaN / None rule ----------------------------------------------------------------------


def test_finalize_drops_undefined_values_and_converts_the_rest() -> None:
    got = finalize(
        {
            (None, "a"): None,
            (None, "b"): float("nan"),
            (None, "c"): float("inf"),
            (None, "d"): -float("inf"),
            ("s", "e"): 3,
            ("s", "f"): True,
            ("s", "g"): 0.0,
        }
    )
    assert got == {("s", "e"): 3.0, ("s", "f"): 1.0, ("s", "g"): 0.0}
    assert all(type(v) is float for v in got.values())


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("acc", "metric keys are (source, key) pairs, got 'acc'"),
        (("", "k"), "metric source must be a non-empty string or None, got ''"),
        ((3, "k"), "metric source must be a non-empty string or None, got 3"),
        (("s", ""), "metric key must be a non-empty string, got ''"),
    ],
)
def test_finalize_refuses_bad_keys(key: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        finalize({key: 1.0})  # type: ignore[dict-item]
    assert str(info.value) == message


# -- update pass-through ------------------------------------------------------------------------


def test_update_metrics_pass_through_actor_and_grad_norms() -> None:
    values = {
        "actor/pg_loss": 0.25,
        "actor/clipfrac": 0.1,
        "actor/kl": float("nan"),  # undefined this step: omitted
        "grad_norm/vision.0": 2.0,
        "grad_norm/language.lm_head": 3,
    }
    assert update_metrics(values) == {
        (None, "actor/pg_loss"): 0.25,
        (None, "actor/clipfrac"): 0.1,
        (None, "grad_norm/vision.0"): 2.0,
        (None, "grad_norm/language.lm_head"): 3.0,
    }


@pytest.mark.parametrize("key", ["actor/pg_los", "loss", "grad_norm/", "reward/final"])
def test_update_metrics_refuse_unknown_keys(key: str) -> None:
    with pytest.raises(ValueError) as info:
        update_metrics({key: 1.0})
    assert str(info.value) == (
        f"unknown update metric {key!r}; known: actor/clipfrac, actor/clipfrac_lower, actor/entropy, "
        "actor/grad_norm, actor/kl, actor/lr, actor/optimizer_steps, actor/pg_loss, actor/ppo_kl, "
        "actor/skipped_steps, grad_norm/<layer>"
    )


# -- IoU threshold ------------------------------------------------------------------------------

try:
    from trainer.rewards import iou_threshold as rewards_iou_threshold
except ImportError:
    rewards_iou_threshold = None
HAS_REWARDS = rewards_iou_threshold is not None


@pytest.mark.skipif(not HAS_REWARDS, reason="trainer.rewards is not in this tree")
@pytest.mark.parametrize(
    ("step", "schedule", "threshold"),
    [
        (0, "dynamic", 0.85),
        (10, "dynamic", 0.85),  # 10 / 100 = 0.10 is still the first stage (<=)
        (11, "dynamic", 0.95),
        (25, "dynamic", 0.95),  # 0.25 <=
        (26, "dynamic", 0.99),
        (100, "dynamic", 0.99),
        (50, 0.7, 0.7),
        (30, [[0.5, 0.6], [1.0, 0.9]], 0.6),
        (60, [[0.5, 0.6], [1.0, 0.9]], 0.9),
    ],
)
def test_iou_threshold_per_step(step: int, schedule: object, threshold: float) -> None:
    from trainer.monitor import iou_threshold_metric

    assert iou_threshold_metric(step, 100, schedule) == {
        (None, "detection/iou_threshold"): pytest.approx(threshold)
    }


@pytest.mark.skipif(not HAS_REWARDS, reason="trainer.rewards is not in this tree")
@pytest.mark.parametrize("schedule", ["dynamic", "average", 0.5, [[0.3, 0.6], [0.9, 0.8]]])
def test_iou_threshold_is_the_one_the_reward_uses(schedule: object) -> None:
    from trainer.monitor import iou_threshold_metric

    for step in (0, 7, 29, 30, 31, 100):
        expected = rewards_iou_threshold(step, 100, schedule)
        assert iou_threshold_metric(step, 100, schedule) == {(None, "detection/iou_threshold"): expected}


# -- perf ---------------------------------------------------------------------------------------


def test_timer_uses_its_clock() -> None:
    ticks = iter([10.0, 12.5])
    with Timer(clock=lambda: next(ticks)) as timer:
        pass
    assert timer.seconds == 2.5


def test_timer_measures_even_when_the_block_raises() -> None:
    ticks = iter([1.0, 4.0])
    timer = Timer(clock=lambda: next(ticks))
    with pytest.raises(RuntimeError), timer:
        raise RuntimeError("boom")
    assert timer.seconds == 3.0


def test_perf_metrics() -> None:
    got = perf_metrics(
        step_time=4.0,
        rollout_time=2.0,
        reward_time=0.5,
        update_time=1.5,
        num_tokens=1000,
        peak_memory_bytes=3 << 29,
    )
    assert got == {
        (None, "perf/step_time"): 4.0,
        (None, "perf/rollout_time"): 2.0,
        (None, "perf/reward_time"): 0.5,
        (None, "perf/update_time"): 1.5,
        (None, "perf/tokens_per_s"): 250.0,  # 1000 / 4
        (None, "perf/peak_memory"): 1.5,  # 3 * 2**29 bytes = 1.5 GiB
    }
    # nothing but the step time given; a zero-length step has no throughput
    assert perf_metrics(step_time=0.0, num_tokens=10) == {(None, "perf/step_time"): 0.0}


def test_peak_rss_is_plausible() -> None:
    peak = peak_rss_bytes()
    assert peak is not None and 10 << 20 < peak < 1 << 40
    assert not math.isnan(peak)
