"""One GRPO training step, top to bottom (DESIGN.md §5).

draw prompts from the mixture → prompt-pool augmentation and image resizing → rollout n
responses per prompt → score every response → group advantages → policy update (old
log-probs recomputed) → metrics. Each stage is a function with explicit inputs; the state it
advances is :class:`~trainer.engine.state.TrainState`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.algo import group_advantages, update_policy
from trainer.data.images import ImageError
from trainer.engine.build import Runtime
from trainer.engine.errors import PreflightError, Problem
from trainer.engine.metrics import StepTimes, sample_records, step_metrics, step_tokens
from trainer.engine.prompts import PromptItem, prepare_item
from trainer.engine.scoring import Scorer, reward_request
from trainer.engine.state import TrainState, step_seed
from trainer.monitor import Metrics, Timer, peak_rss_bytes
from trainer.rewards import RewardResult
from trainer.rollout import Rollout

# Unusable rows (an image that fails to decode) one step may skip before the run gives up.
MAX_BAD_DRAWS = 100


@dataclass(frozen=True)
class StepResult:
    """What a step produced, for logging and the checks that look at responses."""

    metrics: Metrics
    items: list[PromptItem]
    rollouts: list[Rollout]
    skipped_updates: int  # optimizer steps skipped for a non-finite loss or gradient norm
    bad_rows: list[Problem]  # drawn rows that could not be used (replaced by the next draw)


def draw_items(state: TrainState, rt: Runtime, count: int) -> tuple[list[PromptItem], list[Problem]]:
    """The next ``count`` usable prompts of the mixture; a row whose image cannot be used is skipped."""
    items: list[PromptItem] = []
    bad: list[Problem] = []
    model = rt.config.model
    while len(items) < count:
        draw = state.sampler.draws
        name, index = next(state.sampler)
        data = rt.sources[name]
        try:
            items.append(
                prepare_item(
                    name,
                    data.train[index],
                    key=draw,
                    pool=rt.pool,
                    min_pixels=model.min_pixels,
                    max_pixels=model.max_pixels,
                )
            )
        except (ImageError, ValueError) as exc:
            bad.append(Problem(data.where("train", index), f"skipped: {exc}"))
            if len(bad) >= MAX_BAD_DRAWS:
                raise PreflightError(bad, f"{len(bad)} rows drawn for one step could not be used") from None
    return items, bad


def score_rollouts(
    scorer: Scorer,
    items: Sequence[PromptItem],
    rollouts: Sequence[Rollout],
    *,
    step: int,
    rt: Runtime,
) -> list[RewardResult]:
    """Reward of every rollout, with the processed image size and the configured box frame."""
    config = rt.config
    requests = [
        reward_request(
            rollout.response_text,
            items[rollout.prompt_index].reward_model,
            source=items[rollout.prompt_index].source,
            image_size=rollout.image_size,
            step=step,
            total_steps=config.total_steps,
            box_coordinates=config.data.box_coordinates,
            iou_schedule=config.reward.iou_schedule,
        )
        for rollout in rollouts
    ]
    return scorer.score(requests)


def final_rewards(results: Sequence[RewardResult]) -> torch.Tensor:
    """``final_reward`` of each result, (N,) float32; a result without one counts 0."""
    return torch.tensor([float(r.rewards.get("final_reward", 0.0)) for r in results], dtype=torch.float32)


def grpo_advantages(rollouts: Sequence[Rollout], results: Sequence[RewardResult]) -> torch.Tensor:
    """GRPO advantage of each rollout within the group of its prompt (``prompt_index``)."""
    return group_advantages(final_rewards(results), group_ids=[r.prompt_index for r in rollouts])


def peak_memory_bytes() -> int | None:
    """Peak GPU allocation on a GPU, else the process's peak RSS."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return peak_rss_bytes()


def advance_schedule(state: TrainState) -> None:
    """Step the LR schedule once per training step, also when every optimizer step was skipped.

    The schedule counts training steps (warm-up is a fraction of total_steps), so a skipped
    update still moves it; torch's warning about a scheduler stepped before its optimizer is
    expected then and silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        state.scheduler.step()


def train_step(state: TrainState, rt: Runtime) -> StepResult:
    """Run one training step on ``state`` (advanced in place) and return its metrics."""
    config = rt.config
    step = state.step  # 0-based: the schedules (warm-up, IoU threshold) see the steps done before
    with Timer() as total:
        items, bad = draw_items(state, rt, config.rollout.prompts_per_step)
        with Timer() as rollout_time:
            rollouts = rt.backend.generate(
                [item.prompt for item in items],
                n=config.rollout.n,
                max_new_tokens=config.rollout.max_response_length,
                temperature=config.rollout.temperature,
                seed=step_seed(state.seed, step),
            )
        with Timer() as reward_time:
            results = score_rollouts(rt.scorer, items, rollouts, step=step, rt=rt)
        advantages = grpo_advantages(rollouts, results) * config.algo.advantage_sign
        with Timer() as update_time:
            update = update_policy(
                state.model,
                state.optimizer,
                rollouts,
                advantages,
                pad_token_id=rt.pad_token_id,
                config=dataclasses.replace(rt.update, seed=step_seed(state.seed, step, "shuffle")),
                ref_model=rt.ref_model,
            )
            advance_schedule(state)
    state.step += 1
    skipped = int(update.get("actor/skipped_steps", 0))
    state.skipped_total += skipped
    state.nan_streak = state.nan_streak + 1 if skipped else 0
    metrics = step_metrics(
        sample_records(items, rollouts, results),
        update,
        times=StepTimes(total.seconds, rollout_time.seconds, reward_time.seconds, update_time.seconds),
        num_tokens=step_tokens(rollouts),
        peak_memory_bytes=peak_memory_bytes(),
        step=step,
        total_steps=config.total_steps,
        iou_schedule=config.reward.iou_schedule,
    )
    return StepResult(metrics, items, rollouts, skipped, bad)
