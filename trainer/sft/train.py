"""Supervised warm-start (SFT) on the RL sample format: a cold start for tiny models.

A random-init model almost never writes a response the verifiers reward, so GRPO has no
signal (every group has equal rewards, every advantage is 0). A short supervised pass on the
ground truths written in rewarded form (:mod:`trainer.sft.targets`) teaches the layout and a
first answer distribution; RL then improves on it (the "cold start" of DeepSeek-R1, arXiv
2501.12948, §2.3.1).

Prompts are built exactly as the RL loop builds them (same mixture, prompt-pool augmentation
and image resizing, :func:`trainer.engine.prompts.prepare_item`) and the loss is the
token-mean negative log-likelihood of the response tokens only, computed by the same forward
as the policy update (:func:`trainer.algo.logprobs.token_logprobs`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.algo.logprobs import token_logprobs
from trainer.checkpoint.atomic import atomic_directory
from trainer.checkpoint.export import write_policy
from trainer.config import ResolvedSource, TrainConfig
from trainer.data.images import ImageError
from trainer.data.mixture import MixtureSampler
from trainer.data.prompt_pool import PromptPool
from trainer.engine.build import build_model, build_processor_for, device_for_run, pad_token_id
from trainer.engine.prompts import PromptItem, prepare_item
from trainer.engine.sources import SourceData, load_sources
from trainer.models import GROUPS, param_groups
from trainer.rewards import RewardPool
from trainer.rollout.batch import collate
from trainer.rollout.prompts import encode_prompt
from trainer.rollout.types import Rollout
from trainer.sft.dev_eval import dev_accuracy, dev_items, dev_rows
from trainer.sft.targets import target_response

SUMMARY_FILE = "sft_summary.json"
# Unusable rows (an image that fails to decode) one step may skip before the warm-start gives up.
MAX_BAD_DRAWS = 100


@dataclass(frozen=True)
class SFTOptions:
    """Hyper-parameters of a warm-start."""

    steps: int = 100  # optimizer steps
    batch_size: int = 16  # samples per optimizer step
    lr: float = 1e-3  # AdamW learning rate of every trainable group
    warmup_steps: int = 10  # linear warm-up, then constant
    log_every: int = 10  # a progress line every N steps (0 = none)
    # Stop training a source once its greedy accuracy on its dev rows reaches this (None: never).
    target_accuracy: float | None = None
    eval_every: int = 200  # steps between dev evaluations (with a target)
    eval_rows: int = 48  # dev rows held out per source (with a target)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("warmup_steps", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("eval_every", "eval_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        target = self.target_accuracy
        if target is not None and not (
            isinstance(target, int | float) and not isinstance(target, bool) and 0 < target <= 1
        ):
            raise ValueError(f"target_accuracy must be a number in (0, 1] or None, got {target!r}")


@dataclass
class SFTSummary:
    """What a warm-start did: losses per step and where the model went."""

    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)
    out_dir: str = ""
    # With a target accuracy: each dev evaluation ({"step": S, "accuracy": {source: A}}), and
    # the step after which each source that reached the target was no longer trained.
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    reached: dict[str, int] = field(default_factory=dict)


def eos_token_id(processor: ProcessorMixin) -> int:
    """The id that ends a response: ``<|im_end|>`` when the tokenizer has it, else its EOS."""
    tokenizer = processor.tokenizer
    token = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(token, int) and token != tokenizer.unk_token_id:
        return token
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither <|im_end|> nor an EOS token")
    return int(tokenizer.eos_token_id)


def build_example(
    processor: ProcessorMixin, item: PromptItem, *, box_coordinates: str, eos_id: int
) -> Rollout:
    """The prompt of ``item`` with its target response (ending in ``eos_id``) as a training sequence."""
    prompt = encode_prompt(processor, item.prompt)
    image_size = prompt.image_sizes[0] if prompt.image_sizes else None
    text = target_response(item.reward_model, image_size=image_size, box_coordinates=box_coordinates)  # type: ignore[arg-type]
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos_id]
    return Rollout(
        prompt_index=0,
        prompt=prompt,
        response_ids=torch.tensor(ids, dtype=torch.long),
        response_text=text,
        clipped=False,
    )


def sft_loss(
    model: PreTrainedModel,
    examples: Sequence[Rollout],
    *,
    pad_token_id: int,
    micro_batch_size: int,
    remove_padding: bool = False,
) -> float:
    """Backpropagate the token-mean NLL of the responses of ``examples``; return its value.

    Micro-batches are weighted by their share of the tokens, so the accumulated gradient is
    that of the mean over every response token of the batch. ``remove_padding`` packs each
    micro-batch into one row, as the policy update does (``algo.remove_padding``).
    """
    param = next(model.parameters())
    total_tokens = float(sum(e.response_length for e in examples))
    loss_sum = 0.0
    for start in range(0, len(examples), micro_batch_size):
        part = examples[start : start + micro_batch_size]
        batch = collate(part, pad_token_id=pad_token_id).to(param.device, param.dtype)
        logp, _ = token_logprobs(
            model, batch.model_inputs(), batch.response_mask, remove_padding=remove_padding
        )
        nll = -(logp * batch.response_mask).sum()
        (nll / total_tokens).backward()
        loss_sum += float(nll.detach())
    return loss_sum / total_tokens


def _draw(
    sampler: MixtureSampler,
    data: dict[str, SourceData],
    pool: PromptPool | None,
    config: TrainConfig,
    count: int,
    skipped: list[str],
    first_draw: int = 0,
) -> list[PromptItem]:
    items: list[PromptItem] = []
    bad = 0
    while len(items) < count:
        draw = first_draw + sampler.draws
        name, index = next(sampler)
        source = data[name]
        try:
            items.append(
                prepare_item(
                    name,
                    source.train[index],
                    key=("sft", draw),
                    pool=pool,
                    min_pixels=config.model.min_pixels,
                    max_pixels=config.model.max_pixels,
                )
            )
        except (ImageError, ValueError) as exc:
            bad += 1
            skipped.append(f"{source.where('train', index)}: skipped: {exc}")
            if bad >= MAX_BAD_DRAWS:
                raise ValueError(f"{bad} rows drawn for one warm-start step could not be used") from None
    return items


def _record_evaluation(
    summary: SFTSummary,
    step: int,
    accuracy: Mapping[str, float],
    target: float,
    log: Callable[[str], None],
) -> list[str]:
    """Note a dev evaluation in ``summary`` and log it; returns the sources that reached ``target``."""
    summary.evaluations.append({"step": step, "accuracy": dict(accuracy)})
    done = sorted(name for name, value in accuracy.items() if value >= target)
    summary.reached |= {name: step for name in done}
    shown = " ".join(f"{name} {value:.2f}" for name, value in accuracy.items())
    log(f"sft: step {step} dev accuracy {shown}" + (f"; stops training {', '.join(done)}" if done else ""))
    return done


def run_sft(
    config: TrainConfig,
    sources: Sequence[ResolvedSource],
    options: SFTOptions,
    *,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    record: Mapping[str, Any] | None = None,
) -> SFTSummary:
    """Warm-start ``config.model`` on the training rows of ``sources``; write a HF model to ``out_dir``.

    The written directory is usable as ``model.path`` of a GRPO run. Frozen groups
    (``model.freeze``) stay frozen. ``record`` is written beside the options and the summary in
    the directory's ``sft_summary.json``, atomically with the model.
    """
    started = time.perf_counter()
    data = load_sources(sources, test_fraction=config.data.test_fraction, seed=config.seed)
    processor = build_processor_for(config)
    model = build_model(config, device_for_run())
    model.train()
    groups = param_groups(
        model, {group: options.lr for group in GROUPS}, weight_decay=config.algo.weight_decay
    )
    optimizer = torch.optim.AdamW(groups, lr=options.lr, weight_decay=config.algo.weight_decay)
    warmup = options.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    sizes = {name: len(d.train) for name, d in data.items()}
    held = dev_rows(sizes, options.eval_rows) if options.target_accuracy is not None else {}
    trained = {name: size - held.get(name, 0) for name, size in sizes.items()}
    weights = {name: d.weight for name, d in data.items()}
    sampler = MixtureSampler(trained, weights, seed=config.seed)
    earlier_draws = 0  # draws of the samplers before a source was dropped (prompt-pool keys)
    pool = PromptPool(config.seed) if config.data.prompt_pool else None
    dev = dev_items(data, held, config, pool) if held else {}
    reward_pool = RewardPool(workers=1, timeout_s=config.reward.timeout_s) if dev else None
    pad, eos = pad_token_id(processor), eos_token_id(processor)
    params = [p for group in groups for p in group["params"]]
    summary = SFTSummary(out_dir=str(out_dir))
    try:
        for step in range(1, options.steps + 1):
            items = _draw(
                sampler, data, pool, config, options.batch_size, summary.skipped_rows, earlier_draws
            )
            examples = [
                build_example(processor, item, box_coordinates=config.data.box_coordinates, eos_id=eos)
                for item in items
            ]
            optimizer.zero_grad(set_to_none=True)
            loss = sft_loss(
                model,
                examples,
                pad_token_id=pad,
                micro_batch_size=config.algo.micro_batch_size,
                remove_padding=config.algo.remove_padding,
            )
            if not math.isfinite(loss):
                raise ValueError(f"warm-start step {step}: the loss is {loss}; lower --lr")
            torch.nn.utils.clip_grad_norm_(params, config.algo.grad_clip)
            optimizer.step()
            scheduler.step()
            summary.steps, summary.samples = step, summary.samples + len(examples)
            summary.losses.append(loss)
            if options.log_every and (step % options.log_every == 0 or step == options.steps):
                elapsed = time.perf_counter() - started
                log(f"sft: step {step}/{options.steps} | loss {loss:.4f} | {elapsed:.1f} s")
            if reward_pool is not None and step % options.eval_every == 0 and step < options.steps:
                active = {name: dev[name] for name in dev if name not in summary.reached}
                accuracy = dev_accuracy(model, processor, active, config, reward_pool)
                done = _record_evaluation(summary, step, accuracy, options.target_accuracy, log)  # type: ignore[arg-type]
                if done:
                    weights = {n: 0.0 if n in summary.reached else w for n, w in weights.items()}
                    if not any(weights.values()):
                        log(f"sft: every source reached accuracy {options.target_accuracy:g}; stopping")
                        break
                    earlier_draws += sampler.draws
                    sampler = MixtureSampler(trained, weights, seed=config.seed + step)
    finally:
        if reward_pool is not None:
            reward_pool.close()
    model.eval()
    summary.seconds = time.perf_counter() - started
    with atomic_directory(out_dir) as tmp:
        write_policy(model, processor, tmp)
        written = {"options": asdict(options), "summary": asdict(summary) | {"out_dir": str(out_dir)}}
        written |= dict(record or {})
        (tmp / SUMMARY_FILE).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    return summary
