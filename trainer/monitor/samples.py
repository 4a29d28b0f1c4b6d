"""Per-sample metrics of a step: records in, ``{(source, key): value}`` out (DESIGN.md §6).

Each family is one pure function computed per data source and over the whole step (source
None). Keys and meanings are in :data:`trainer.monitor.keys.METRIC_DOCS`; undefined values are
omitted by :func:`trainer.monitor.values.finalize`. V-Triune's released
``verl/trainer/ppo/metric_utils.py`` computes the same families under other names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import SupportsFloat

from trainer.monitor.grpo import grpo_family
from trainer.monitor.keys import REFLECTION_WORDS, reflection_word_key
from trainer.monitor.records import REWARD_SUFFIX, MetricKey, Metrics, SampleRecord, by_source
from trainer.monitor.reflection import reflection_counts
from trainer.monitor.values import finalize, mean, ratio

Family = Callable[[Sequence[SampleRecord]], dict[str, float | None]]


@functools.cache
def detection_table() -> Mapping[str, str]:
    """Detection reward key → metric key (``report_iou_50_label_match_pure_reward`` → ``detection/iou@50``).

    The one table lives with the verifier that names the keys (``trainer.rewards.detection``);
    it is imported on first use so that importing the monitor (or the trackers) stays light.
    Keys in it are reported under ``detection/`` only, not also under ``reward/``.
    """
    from trainer.rewards.detection import DETECTION_METRIC_KEYS

    return DETECTION_METRIC_KEYS


def _per_source(records: Sequence[SampleRecord], family: Family, prefix: str = "") -> Metrics:
    out: dict[MetricKey, SupportsFloat | None] = {}
    for source, group in by_source(records).items():
        for key, value in family(group).items():
            out[(source, prefix + key)] = value
    return finalize(out)


def _component(reward_key: str) -> str:
    return reward_key[: -len(REWARD_SUFFIX)]


def _reward_means(records: Sequence[SampleRecord]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.rewards.items():
            values.setdefault(key, []).append(float(value))
    return values


def _reward_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    return {
        f"reward/{_component(key)}": mean(values)
        for key, values in _reward_means(records).items()
        if key not in detection_table()
    }


def reward_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``reward/<component>``: mean of each reward key over the responses that have it.

    Detection report keys (:func:`detection_table`) are left to :func:`detection_metrics`.
    """
    return _per_source(records, _reward_family)


def _length_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    correct = [r for r in records if r.correct]
    wrong = [r for r in records if not r.correct]
    return {
        "response_length/mean": mean(r.response_length for r in records),
        "response_length/clip_ratio": ratio(sum(r.clipped for r in records), len(records)),
        "response_length/correct_mean": mean(r.response_length for r in correct),
        "response_length/wrong_mean": mean(r.response_length for r in wrong),
        "response_length/correct_clip_ratio": ratio(sum(r.clipped for r in correct), len(correct)),
        "response_length/wrong_clip_ratio": ratio(sum(r.clipped for r in wrong), len(wrong)),
    }


def response_length_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``response_length/*``: mean length and clip ratio, overall and split by correctness."""
    return _per_source(records, _length_family)


WordCounts = dict[int, dict[str, int]]


def _word_counts(records: Sequence[SampleRecord]) -> WordCounts:
    """Reflection-word counts of each record (by ``id``), computed once per call.

    Counting is the monitor's only cost that grows with text length (a V-Triune step is 8,192
    responses of up to 2,048 tokens), and every record is in two groups (its source and the
    whole step), so it is not repeated per group.
    """
    return {id(r): reflection_counts(r.response_text) for r in records}


def _reflection_family(counts_of: WordCounts) -> Family:
    def family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
        counts = [counts_of[id(r)] for r in records]
        reflective = [any(c.values()) for c in counts]
        correct = [r.correct for r in records]
        n_reflective = sum(reflective)
        n_correct = sum(correct)
        n = len(records)
        both = sum(f and c for f, c in zip(reflective, correct, strict=True))
        out: dict[str, float | None] = {
            "reflection/ratio": ratio(n_reflective, n),
            # reflective among correct / among wrong
            "reflection/ratio_in_correct": ratio(both, n_correct),
            "reflection/ratio_in_wrong": ratio(n_reflective - both, n - n_correct),
            # correct among reflective / among non-reflective
            "reflection/correct_in_reflective": ratio(both, n_reflective),
            "reflection/correct_in_non_reflective": ratio(n_correct - both, n - n_reflective),
        }
        for word in REFLECTION_WORDS:
            out[reflection_word_key(word)] = float(sum(c[word] for c in counts))
        return out

    return family


def reflection_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``reflection/*`` ratios and ``reflection_word/<word>`` counts (V-Triune paper §5)."""
    return _per_source(records, _reflection_family(_word_counts(records)))


def _detection_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    values = _reward_means(records)
    return {metric: mean(values[key]) for key, metric in detection_table().items() if key in values}


def detection_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``detection/iou@t``, ``precision@t``, ``recall@t``, ``map``, ``map50``, ``map75``.

    Means of the detection reward keys over the responses that carry them (detection and
    grounding samples); a source without them gets none of these keys.
    """
    return _per_source(records, _detection_family)


def _count_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    return {"count": float(len(records)), "reward_errors": float(sum(r.reward_error for r in records))}


def count_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``count`` (responses) and ``reward_errors`` (scoring timeouts and failures)."""
    return _per_source(records, _count_family)


def sample_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """Every per-sample family of a training step, per source and for the whole step.

    The ``grpo/*`` group statistics come from records that carry a group (and an advantage).
    """

    reflection = _reflection_family(_word_counts(records))

    def family(group: Sequence[SampleRecord]) -> dict[str, float | None]:
        return {
            **_count_family(group),
            **_reward_family(group),
            **_length_family(group),
            **reflection(group),
            **_detection_family(group),
            **grpo_family(group),
        }

    return _per_source(records, family)


def _eval_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        f"eval/{_component(key)}": mean(values) for key, values in _reward_means(records).items()
    }
    out["eval/count"] = float(len(records))
    return out


def eval_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``eval/<component>`` (mean of every reward key) and ``eval/count`` for an evaluation pass."""
    return _per_source(records, _eval_family)
