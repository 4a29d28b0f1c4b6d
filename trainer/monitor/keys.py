"""Every metric key the trainer logs, documented once (DESIGN.md §6).

:data:`METRIC_DOCS` maps each key (or key pattern, with ``<placeholders>``) to its scope and
meaning; ``trainer/monitor/METRICS.md`` is rendered from it by :func:`render_metrics_markdown`
(``python -m trainer.monitor > trainer/monitor/METRICS.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from trainer.monitor.grpo import DRIFT_BASELINE_STEPS

# Scope of a key: "source" = one value per data source plus one over the whole step (source
# null); "global" = one value per step (source null); "eval" = like "source", at evaluation.
Scope = Literal["source", "global", "eval"]

# V-Triune's reflection words (paper §5, released verl/trainer/ppo/metric_utils.py). A response
# is reflective when its lower-cased text contains one as a substring (so "waiting" counts for
# "wait" and "verifying" for "verify"), which is how the paper counted them.
REFLECTION_WORDS: tuple[str, ...] = (
    "re-check",
    "re-evaluate",
    "re-examine",
    "re-think",
    "recheck",
    "reevaluate",
    "reexamine",
    "reevaluation",
    "rethink",
    "check again",
    "think again",
    "try again",
    "verify",
    "wait",
    "yet",
)

IOU_LEVELS: tuple[int, ...] = (50, 75, 95, 99)


def reflection_word_key(word: str) -> str:
    """Metric key of a reflection word; spaces become ``_`` (``check again`` → ``check_again``)."""
    return "reflection_word/" + word.replace(" ", "_")


@dataclass(frozen=True)
class MetricDoc:
    """Where a key is reported and what it means."""

    scope: Scope
    description: str


_T = "<t>"  # one of IOU_LEVELS: the IoU threshold in hundredths

METRIC_DOCS: dict[str, MetricDoc] = {
    "reward/<component>": MetricDoc(
        "source",
        "Mean of `<component>_reward` from trainer.rewards.compute_reward over the responses that "
        "have it: final, accuracy, format, and the detection breakdown (iou_max_label_first, ...). "
        "Keys with a detection/ name are reported there instead.",
    ),
    "response_length/mean": MetricDoc("source", "Mean response length in tokens."),
    "response_length/clip_ratio": MetricDoc(
        "source", "Fraction of responses that hit rollout.max_response_length."
    ),
    "response_length/correct_mean": MetricDoc(
        "source", "Mean length of correct responses (accuracy_reward = 1); omitted when none is correct."
    ),
    "response_length/wrong_mean": MetricDoc(
        "source", "Mean length of the other responses; omitted when every response is correct."
    ),
    "response_length/correct_clip_ratio": MetricDoc(
        "source", "Fraction of correct responses that hit the length limit; omitted when none is correct."
    ),
    "response_length/wrong_clip_ratio": MetricDoc(
        "source", "Fraction of wrong responses that hit the length limit; omitted when none is wrong."
    ),
    "response_length/drift": MetricDoc(
        "source",
        "Mean response length this step minus the source's baseline: its mean length over every "
        f"response of the first {DRIFT_BASELINE_STEPS} steps it was drawn in (this step included while "
        "it is one of them, "
        "so the first step's drift is 0). Kept in checkpoints, so a resumed run reports the same drift.",
    ),
    "reflection/ratio": MetricDoc(
        "source", "Fraction of responses that are reflective (contain a reflection word)."
    ),
    "reflection/ratio_in_correct": MetricDoc(
        "source", "Fraction of correct responses that are reflective; omitted when none is correct."
    ),
    "reflection/ratio_in_wrong": MetricDoc(
        "source", "Fraction of wrong responses that are reflective; omitted when none is wrong."
    ),
    "reflection/correct_in_reflective": MetricDoc(
        "source", "Fraction of reflective responses that are correct; omitted when none is reflective."
    ),
    "reflection/correct_in_non_reflective": MetricDoc(
        "source", "Fraction of non-reflective responses that are correct; omitted when all are reflective."
    ),
    "reflection_word/<word>": MetricDoc(
        "source",
        "Occurrences of one reflection word in the lower-cased responses (substring count). Words: "
        + ", ".join(REFLECTION_WORDS)
        + "; a space in the word is `_` in the key.",
    ),
    f"detection/iou@{_T}": MetricDoc(
        "source",
        "Mean matched IoU at threshold 0.<t> (t = 50, 75, 95, 99): sum of the IoU of label-matched "
        "pairs / number of ground-truth boxes; detection and grounding responses only.",
    ),
    f"detection/precision@{_T}": MetricDoc(
        "source", "Matched predictions / predictions at IoU threshold 0.<t>, labels matching."
    ),
    f"detection/recall@{_T}": MetricDoc(
        "source", "Matched ground-truth boxes / ground-truth boxes at IoU threshold 0.<t>, labels matching."
    ),
    "detection/map": MetricDoc("source", "COCO mAP@[.50:.95] of each response's boxes (one image), mean."),
    "detection/map50": MetricDoc("source", "COCO AP at IoU 0.50, mean over responses."),
    "detection/map75": MetricDoc("source", "COCO AP at IoU 0.75, mean over responses."),
    "count": MetricDoc("source", "Responses of the source in the step (source null: the whole step)."),
    "reward_errors": MetricDoc(
        "source", "Responses whose scoring timed out or failed; they were scored 0 (source null: all)."
    ),
    "grpo/frac_zero_std": MetricDoc(
        "source",
        "Share of the step's GRPO groups (the n responses to one prompt; a group belongs to the "
        "source of its prompt) whose final rewards are all equal: their advantages are 0, so they "
        "carry no learning signal (TRL's frac_reward_zero_std).",
    ),
    "grpo/reward_std": MetricDoc(
        "source",
        "Mean over the groups of the population standard deviation (divided by n) of the final "
        "reward within a group; 0 when every group is constant.",
    ),
    "grpo/adv_abs_mean": MetricDoc(
        "source",
        "Mean absolute GRPO advantage (r − mean_g) / (std_g + 1e-6), std_g Bessel-corrected as the "
        "update uses it, over the responses.",
    ),
    "grpo/groups_refilled": MetricDoc(
        "source",
        "Only with algo.dynamic_sampling.enabled: groups whose final rewards were all equal and that "
        "were replaced by a fresh prompt of the same source this step (summed over the retries). "
        "With dynamic sampling every per-source metric covers all the groups sampled in the step, "
        "replaced ones included.",
    ),
    "grpo/groups_dropped": MetricDoc(
        "source",
        "Only with algo.dynamic_sampling.enabled: groups still all equal after "
        "algo.dynamic_sampling.max_retries refills, left out of the update without a replacement; "
        "the update trains on rollout.prompts_per_step minus these groups.",
    ),
    "detection/iou_threshold": MetricDoc(
        "global",
        "IoU threshold ε the detection reward used this step (reward.iou_schedule); for `average`, "
        "the mean of the thresholds it averages over.",
    ),
    "actor/pg_loss": MetricDoc("global", "Clipped policy-gradient loss, token mean over the batch."),
    "actor/clipfrac": MetricDoc("global", "Fraction of response tokens where the PPO clip was active."),
    "actor/clipfrac_lower": MetricDoc(
        "global", "Fraction of response tokens where the dual-clip bound (algo.dual_clip_c) was active."
    ),
    "actor/kl": MetricDoc(
        "global", "KL to the reference policy (algo.kl.kind), token mean; absent when algo.kl.kind is null."
    ),
    "actor/entropy": MetricDoc("global", "Mean per-token entropy of the policy on the responses."),
    "actor/grad_norm": MetricDoc("global", "Global gradient norm before clipping."),
    "actor/lr": MetricDoc("global", "Learning rate of the language model at this step."),
    "actor/ppo_kl": MetricDoc(
        "global",
        "Mean of old − new log-prob over the response tokens: how far the policy drifted during the "
        "update (about 0 when the step makes one optimizer step, as on-policy GRPO does).",
    ),
    "actor/optimizer_steps": MetricDoc("global", "Optimizer steps taken in this training step."),
    "actor/skipped_steps": MetricDoc(
        "global",
        "Optimizer steps skipped in this training step because the loss or the gradient norm was NaN "
        "or infinite (their gradients are dropped); algo.max_nan_steps training steps in a row with a "
        "skip stop the run.",
    ),
    "grad_norm/<layer>": MetricDoc(
        "global",
        "Gradient norm of one layer: vision.<i>, language.<i>, vision.<part>, connector.merger, "
        "language.embed_tokens, language.norm, language.lm_head, other.",
    ),
    "perf/step_time": MetricDoc("global", "Seconds of the whole step."),
    "perf/rollout_time": MetricDoc("global", "Seconds spent generating responses."),
    "perf/reward_time": MetricDoc("global", "Seconds spent scoring responses."),
    "perf/update_time": MetricDoc("global", "Seconds spent in log-prob recomputation and the policy update."),
    "perf/tokens_per_s": MetricDoc("global", "Prompt + response tokens of the step / step time."),
    "perf/peak_memory": MetricDoc(
        "global", "Peak memory in GiB: the process's peak RSS, or the GPU's peak allocation on a GPU."
    ),
    "eval/<component>": MetricDoc(
        "eval", "Mean of `<component>_reward` over the source's test samples, greedy decoding."
    ),
    "eval/count": MetricDoc("eval", "Test samples evaluated."),
}

ACTOR_KEYS: frozenset[str] = frozenset(k for k in METRIC_DOCS if k.startswith("actor/"))

_PLACEHOLDERS = {
    "<component>": r"[a-z0-9_]+",
    "<t>": "(?:" + "|".join(str(level) for level in IOU_LEVELS) + ")",
    "<word>": "(?:" + "|".join(re.escape(w.replace(" ", "_")) for w in REFLECTION_WORDS) + ")",
    "<layer>": r"[A-Za-z0-9_.]+",
}


def _pattern(doc_key: str) -> re.Pattern[str]:
    regex = re.escape(doc_key)
    for placeholder, part in _PLACEHOLDERS.items():
        regex = regex.replace(re.escape(placeholder), part)
    return re.compile(f"^{regex}$")


_COMPILED: list[tuple[str, re.Pattern[str]]] = [(key, _pattern(key)) for key in METRIC_DOCS]


def doc_key_of(key: str) -> str:
    """The :data:`METRIC_DOCS` entry a concrete key falls under (``reward/format`` → ``reward/<component>``).

    Raises ``KeyError`` for an undocumented key.
    """
    if key in METRIC_DOCS:
        return key
    for doc_key, pattern in _COMPILED:
        if pattern.match(key):
            return doc_key
    raise KeyError(f"metric key {key!r} is not documented in trainer.monitor.keys.METRIC_DOCS")


def describe(key: str) -> MetricDoc:
    """Scope and meaning of a concrete metric key."""
    return METRIC_DOCS[doc_key_of(key)]


def render_metrics_markdown() -> str:
    """The metric table as Markdown (the content of ``trainer/monitor/METRICS.md``)."""
    scopes = {
        "source": "per source + all",
        "global": "global",
        "eval": "per source + all (eval)",
    }
    lines = [
        "# Metrics",
        "",
        "Every key the trainer logs, one row each (generated from `trainer/monitor/keys.py`; edit it there).",
        "A point is (step, source, key, value); source is the data source, or null for the whole",
        "step. Undefined values (e.g. the mean length of correct responses when none is correct) are",
        "omitted, never NaN.",
        "",
        "| key | scope | meaning |",
        "|---|---|---|",
    ]
    for key, doc in METRIC_DOCS.items():
        description = doc.description.replace("|", "\\|")
        lines.append(f"| `{key}` | {scopes[doc.scope]} | {description} |")
    return "\n".join(lines) + "\n"
