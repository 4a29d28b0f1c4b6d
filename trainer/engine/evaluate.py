"""Greedy evaluation on each source's test split, scored by the same verifiers as training."""

from __future__ import annotations

from collections.abc import Sequence

from trainer.data.images import ImageError
from trainer.engine.build import Runtime
from trainer.engine.errors import Problem
from trainer.engine.metrics import evaluation_metrics, sample_records
from trainer.engine.prompts import PromptItem, prepare_item
from trainer.engine.step import score_rollouts
from trainer.monitor import Metrics, SampleRecord

# Prompts generated together; bounds the images and padded batch held at once.
EVAL_BATCH_PROMPTS = 64


def eval_items(rt: Runtime, source: str) -> tuple[list[PromptItem], list[Problem]]:
    """The test prompts of ``source`` (capped by ``eval.max_samples_per_source``), and the unusable rows."""
    data = rt.sources[source]
    cap = rt.config.eval.max_samples_per_source
    rows = data.test if cap is None else data.test[:cap]
    model = rt.config.model
    items: list[PromptItem] = []
    bad: list[Problem] = []
    for index, row in enumerate(rows):
        try:
            items.append(
                prepare_item(
                    source,
                    row,
                    key=("eval", index),
                    pool=rt.pool,
                    min_pixels=model.min_pixels,
                    max_pixels=model.max_pixels,
                )
            )
        except (ImageError, ValueError) as exc:
            bad.append(Problem(data.where("test", index), f"skipped: {exc}"))
    return items, bad


def _score_batch(rt: Runtime, items: Sequence[PromptItem], step: int) -> list[SampleRecord]:
    rollouts = rt.backend.generate(
        [item.prompt for item in items],
        n=1,
        max_new_tokens=rt.config.rollout.max_response_length,
        greedy=True,
    )
    results = score_rollouts(rt.scorer, items, rollouts, step=step, rt=rt)
    return sample_records(items, rollouts, results)


def evaluate(rt: Runtime, *, step: int) -> tuple[Metrics, list[Problem]]:
    """``eval/<component>`` and ``eval/count`` per source (sources without test rows are absent).

    ``step`` is the 0-based training step whose IoU threshold the detection reward uses.
    """
    records: list[SampleRecord] = []
    bad: list[Problem] = []
    for source in rt.sources:
        items, skipped = eval_items(rt, source)
        bad += skipped
        for start in range(0, len(items), EVAL_BATCH_PROMPTS):
            records += _score_batch(rt, items[start : start + EVAL_BATCH_PROMPTS], step)
    return evaluation_metrics(records), bad
