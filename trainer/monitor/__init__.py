"""Per-step metrics of the RL engine (DESIGN.md §6): records in, ``{(source, key): value}`` out.

The monitor computes values only; it knows nothing of trackers or HTTP (``trainer.tracking``
sends what it returns). Every key is documented once in :data:`METRIC_DOCS`.
"""

from trainer.monitor.grpo import (
    DRIFT_BASELINE_STEPS,
    GroupStats,
    LengthBaseline,
    LengthBaselines,
    baselines_from_state,
    baselines_state,
    dynamic_sampling_metrics,
    group_stats,
    grpo_family,
    grpo_metrics,
    length_drift_metrics,
    update_length_baselines,
)
from trainer.monitor.keys import (
    METRIC_DOCS,
    REFLECTION_WORDS,
    MetricDoc,
    describe,
    doc_key_of,
    reflection_word_key,
    render_metrics_markdown,
)
from trainer.monitor.perf import Timer, peak_rss_bytes, perf_metrics
from trainer.monitor.records import MetricKey, Metrics, SampleRecord, by_source
from trainer.monitor.reflection import is_reflective, reflection_counts
from trainer.monitor.samples import (
    count_metrics,
    detection_metrics,
    detection_table,
    eval_metrics,
    reflection_metrics,
    response_length_metrics,
    reward_metrics,
    sample_metrics,
)
from trainer.monitor.training import iou_threshold_metric, update_metrics
from trainer.monitor.values import finalize

__all__ = [
    "DRIFT_BASELINE_STEPS",
    "METRIC_DOCS",
    "REFLECTION_WORDS",
    "GroupStats",
    "LengthBaseline",
    "LengthBaselines",
    "MetricDoc",
    "MetricKey",
    "Metrics",
    "SampleRecord",
    "Timer",
    "baselines_from_state",
    "baselines_state",
    "by_source",
    "count_metrics",
    "describe",
    "detection_metrics",
    "detection_table",
    "doc_key_of",
    "dynamic_sampling_metrics",
    "eval_metrics",
    "finalize",
    "group_stats",
    "grpo_family",
    "grpo_metrics",
    "iou_threshold_metric",
    "length_drift_metrics",
    "is_reflective",
    "peak_rss_bytes",
    "perf_metrics",
    "reflection_counts",
    "reflection_metrics",
    "reflection_word_key",
    "render_metrics_markdown",
    "response_length_metrics",
    "reward_metrics",
    "sample_metrics",
    "update_length_baselines",
    "update_metrics",
]
