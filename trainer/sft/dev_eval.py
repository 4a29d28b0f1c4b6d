"""Greedy accuracy of a warm-start on rows of each source it does not train on (its dev rows).

A warm-start with a target accuracy (``SFTOptions.target_accuracy``) stops training a source
once the model answers enough of its dev rows right, so that GRPO starts every source with
headroom: a source the warm-start solved gives GRPO groups of equal rewards (no signal), and one
it left at 0 gives none either. The dev rows are the last rows of each source's training split,
which the warm-start then never draws; GRPO still trains on them, and its own evaluation uses
the test split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.config import TrainConfig
from trainer.data.images import ImageError
from trainer.data.prompt_pool import PromptPool
from trainer.engine.prompts import PromptItem, prepare_item
from trainer.engine.scoring import reward_request
from trainer.engine.sources import SourceData
from trainer.rewards import RewardPool
from trainer.rollout import build_backend

# Prompts generated together.
DEV_BATCH_PROMPTS = 64


def dev_rows(sizes: Mapping[str, int], rows: int) -> dict[str, int]:
    """How many rows at the end of each source's training split are held out: ``rows``, but never
    more than a quarter of the split (a source of fewer than 4 rows holds out none).

    >>> dev_rows({"a": 1800, "b": 40, "c": 3}, 32)
    {'a': 32, 'b': 10, 'c': 0}
    """
    return {name: min(rows, size // 4) for name, size in sizes.items()}


def dev_items(
    data: Mapping[str, SourceData], held: Mapping[str, int], config: TrainConfig, pool: PromptPool | None
) -> dict[str, list[PromptItem]]:
    """The dev prompts of every source that holds some out (unusable rows are left out).

    ``pool`` is the prompt pool the warm-start trains with (its instructions are part of every
    training prompt; GRPO's own evaluation adds them too): without it the prompts would not be
    the ones the model learns to answer.
    """
    items: dict[str, list[PromptItem]] = {}
    for name, count in held.items():
        train = data[name].train
        prepared = []
        for index in range(len(train) - count, len(train)):
            try:
                prepared.append(
                    prepare_item(
                        name,
                        train[index],
                        key=("sft-dev", index),
                        pool=pool,
                        min_pixels=config.model.min_pixels,
                        max_pixels=config.model.max_pixels,
                    )
                )
            except (ImageError, ValueError):
                continue
        if prepared:
            items[name] = prepared
    return items


def dev_accuracy(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    items: Mapping[str, Sequence[PromptItem]],
    config: TrainConfig,
    pool: RewardPool,
) -> dict[str, float]:
    """Mean ``accuracy_reward`` of greedy responses per source, scored as GRPO's step 0 scores them."""
    backend = build_backend(
        "hf", model=model, processor=processor, max_batch_size=config.rollout.micro_batch_size
    )
    was_training = model.training
    model.eval()
    accuracy: dict[str, float] = {}
    try:
        for name, prompts in items.items():
            total = 0.0
            for start in range(0, len(prompts), DEV_BATCH_PROMPTS):
                batch = prompts[start : start + DEV_BATCH_PROMPTS]
                rollouts = backend.generate(
                    [item.prompt for item in batch],
                    n=1,
                    max_new_tokens=config.rollout.max_response_length,
                    greedy=True,
                )
                requests = [
                    reward_request(
                        rollout.response_text,
                        batch[rollout.prompt_index].reward_model,
                        source=name,
                        image_size=rollout.image_size,
                        step=0,
                        total_steps=config.total_steps,
                        box_coordinates=config.data.box_coordinates,
                        iou_schedule=config.reward.iou_schedule,
                    )
                    for rollout in rollouts
                ]
                total += sum(float(r.rewards.get("accuracy_reward", 0.0)) for r in pool.score(requests))
            accuracy[name] = total / len(prompts)
    finally:
        model.train(was_training)
    return accuracy
