"""One GRPO training step, top to bottom (DESIGN.md §5).

draw prompts from the mixture → prompt-pool augmentation and image resizing → rollout n
responses per prompt → score every response → (dynamic sampling: refill the groups whose
rewards are all equal) → group advantages → policy update (old log-probs recomputed) → metrics.
Each stage is a function with explicit inputs; the state it advances is
:class:`~trainer.engine.state.TrainState`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from trainer.algo import group_advantages, zero_std_groups
from trainer.data.images import ImageError
from trainer.engine.build import Runtime
from trainer.engine.errors import PreflightError, Problem
from trainer.engine.metrics import StepTimes, sample_records, step_metrics, step_tokens
from trainer.engine.prompts import PromptItem, prepare_item
from trainer.engine.scoring import Scorer, reward_request
from trainer.engine.state import TrainState, step_seed
from trainer.monitor import Metrics, Timer, peak_rss_bytes, update_length_baselines
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
    results: list[RewardResult] = field(default_factory=list)  # the reward of each rollout


def _draw_usable(
    rt: Runtime, count: int, next_row: Callable[[], tuple[str, int, object]]
) -> tuple[list[PromptItem], list[Problem]]:
    """``count`` prompts from ``next_row() -> (source, index, key)``; a row whose image cannot be used
    is skipped and the next one taken."""
    items: list[PromptItem] = []
    bad: list[Problem] = []
    model = rt.config.model
    while len(items) < count:
        name, index, key = next_row()
        data = rt.sources[name]
        try:
            items.append(
                prepare_item(
                    name,
                    data.train[index],
                    key=key,
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


def draw_items(state: TrainState, rt: Runtime, count: int) -> tuple[list[PromptItem], list[Problem]]:
    """The next ``count`` usable prompts of the mixture; a row whose image cannot be used is skipped."""

    def next_row() -> tuple[str, int, object]:
        draw = state.sampler.draws  # the prompt-pool key: a resumed run writes the same prompts
        name, index = next(state.sampler)
        return name, index, draw

    return _draw_usable(rt, count, next_row)


def draw_items_of(
    state: TrainState, rt: Runtime, sources: Sequence[str], *, key: tuple[object, ...]
) -> tuple[list[PromptItem], list[Problem]]:
    """One fresh usable prompt of each of ``sources`` (in order), outside the mixture's draws.

    The prompt-pool key of the prompt for ``sources[i]`` is ``(*key, i)``.
    """
    items: list[PromptItem] = []
    bad: list[Problem] = []
    for slot, name in enumerate(sources):

        def next_row(name: str = name, slot: int = slot) -> tuple[str, int, object]:
            return name, state.sampler.next_of(name), (*key, slot)

        found, skipped = _draw_usable(rt, 1, next_row)
        items += found
        bad += skipped
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


@dataclass
class SampledGroups:
    """The prompts and scored responses of a step, refills included, with what dynamic sampling did."""

    items: list[PromptItem]
    rollouts: list[Rollout]  # prompt_index indexes items: the GRPO group id
    results: list[RewardResult]
    bad: list[Problem]
    refilled: Counter[str] = field(default_factory=Counter)  # per source: groups replaced by a fresh prompt
    dropped: Counter[str] = field(default_factory=Counter)  # per source: groups all equal after the retries
    rollout_seconds: float = 0.0
    reward_seconds: float = 0.0

    def sample(self, rt: Runtime, items: Sequence[PromptItem], *, step: int, seed: int) -> list[int]:
        """Generate and score ``n`` responses for each of ``items``; returns their group ids."""
        config = rt.config
        offset = len(self.items)
        with Timer() as rollout_time:
            generated = rt.backend.generate(
                [item.prompt for item in items],
                n=config.rollout.n,
                max_new_tokens=config.rollout.max_response_length,
                temperature=config.rollout.temperature,
                seed=seed,
            )
        with Timer() as reward_time:
            results = score_rollouts(rt.scorer, items, generated, step=step, rt=rt)
        self.items += items
        self.rollouts += [dataclasses.replace(r, prompt_index=r.prompt_index + offset) for r in generated]
        self.results += results
        self.rollout_seconds += rollout_time.seconds
        self.reward_seconds += reward_time.seconds
        return list(range(offset, len(self.items)))

    def zero_std(self, groups: Sequence[int]) -> list[int]:
        """Those of ``groups`` whose final rewards are all equal."""
        wanted = set(groups)
        rewards = final_rewards(self.results).tolist()
        ids = [r.prompt_index for r in self.rollouts]
        return [g for g in zero_std_groups(rewards, ids) if g in wanted]


def sample_groups(state: TrainState, rt: Runtime, *, step: int) -> SampledGroups:
    """Draw ``rollout.prompts_per_step`` prompts, generate and score their groups.

    With ``algo.dynamic_sampling`` on (DAPO, arXiv 2503.14476, §3.2), each group whose final
    rewards are all equal is replaced by a fresh prompt of the same source, generated and scored
    in turn, up to ``max_retries`` rounds; the groups still all equal after the last round are
    counted as dropped. Each round samples with its own seed of (seed, step), so a resumed run
    samples the same.
    """
    config = rt.config
    items, bad = draw_items(state, rt, config.rollout.prompts_per_step)
    groups = SampledGroups([], [], [], bad)
    pending = groups.sample(rt, items, step=step, seed=step_seed(state.seed, step))
    dynamic = config.algo.dynamic_sampling
    if not dynamic.enabled:
        return groups
    pending = groups.zero_std(pending)
    for round_ in range(1, dynamic.max_retries + 1):
        if not pending:
            break
        sources = [groups.items[g].source for g in pending]
        refills, skipped = draw_items_of(state, rt, sources, key=("refill", step, round_))
        groups.bad += skipped
        groups.refilled.update(sources)
        fresh = groups.sample(rt, refills, step=step, seed=step_seed(state.seed, step, f"refill{round_}"))
        pending = groups.zero_std(fresh)
    groups.dropped.update(groups.items[g].source for g in pending)
    return groups


def train_step(state: TrainState, rt: Runtime) -> StepResult:
    """Run one training step on ``state`` (advanced in place) and return its metrics."""
    config = rt.config
    step = state.step  # 0-based: the schedules (warm-up, IoU threshold) see the steps done before
    with Timer() as total:
        groups = sample_groups(state, rt, step=step)
        items, rollouts, results = groups.items, groups.rollouts, groups.results
        advantages = grpo_advantages(rollouts, results) * config.algo.advantage_sign
        batch, batch_advantages = rollouts, advantages
        if config.algo.dynamic_sampling.enabled:
            # every group without a learning signal stays out of the update (DAPO)
            constant = set(groups.zero_std(range(len(items))))
            kept = [i for i, r in enumerate(rollouts) if r.prompt_index not in constant]
            batch, batch_advantages = [rollouts[i] for i in kept], advantages[kept]
        with Timer() as update_time:
            if batch:
                update = state.policy.update(
                    batch,
                    batch_advantages,
                    dataclasses.replace(rt.update, seed=step_seed(state.seed, step, "shuffle")),
                )
            else:
                update = {"actor/optimizer_steps": 0.0, "actor/skipped_steps": 0.0}
            state.policy.advance_schedule()
    state.step += 1
    skipped = int(update.get("actor/skipped_steps", 0))
    state.skipped_total += skipped
    state.nan_streak = state.nan_streak + 1 if skipped else 0
    records = sample_records(items, rollouts, results, advantages.tolist())
    state.length_baselines = update_length_baselines(state.length_baselines, records)
    metrics = step_metrics(
        records,
        update,
        times=StepTimes(total.seconds, groups.rollout_seconds, groups.reward_seconds, update_time.seconds),
        num_tokens=step_tokens(rollouts),
        peak_memory_bytes=peak_memory_bytes(),
        step=step,
        total_steps=config.total_steps,
        iou_schedule=config.reward.iou_schedule,
        length_baselines=state.length_baselines,
        refills=(groups.refilled, groups.dropped) if config.algo.dynamic_sampling.enabled else None,
    )
    return StepResult(metrics, items, rollouts, skipped, groups.bad, results)
