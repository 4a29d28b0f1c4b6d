"""Rollout with Hugging Face ``generate``: batched, left-padded, on CPU or GPU.

Decoding is owned entirely by the call: the model's ``generation_config`` (a hub
checkpoint may ship ``top_k=1`` or ``temperature=0.01``) is set aside while
generating, so sampling is plain ancestral sampling at ``temperature`` (no top-k,
no top-p), or greedy. Vision tokens are suppressed (their logits set to -inf) so
an untrained model cannot emit them; any that still appear are replaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.rollout.prompts import encode_prompt, plain_token_id, replace_tokens, vision_token_ids
from trainer.rollout.registry import check_generate_args, register_backend
from trainer.rollout.types import PromptInputs, Rollout, RolloutPrompt

IM_END = "<|im_end|>"


def left_pad(prompts: Sequence[PromptInputs], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch prompts for generation: ids and masks left-padded to the longest, images concatenated."""
    if not prompts:
        raise ValueError("no prompts to pad")
    width = max(p.length for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    mm_types = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - prompt.length :] = prompt.input_ids
        attention_mask[row, width - prompt.length :] = 1
        mm_types[row, width - prompt.length :] = prompt.mm_token_type_ids
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": mm_types}
    with_images = [p for p in prompts if p.pixel_values is not None]
    if with_images:
        batch["pixel_values"] = torch.cat([p.pixel_values for p in with_images])  # type: ignore[misc]
        batch["image_grid_thw"] = torch.cat([p.image_grid_thw for p in with_images])  # type: ignore[misc]
    return batch


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch inside the block and restore the global RNG state after it."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _own_generation_config(model: PreTrainedModel) -> Iterator[None]:
    """Hide the checkpoint's generation defaults so only the call's settings apply."""
    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


@register_backend("hf")
class HFRolloutBackend:
    """:class:`~trainer.rollout.registry.RolloutBackend` on ``model.generate``.

    ``max_batch_size`` bounds the sequences generated together; ``record_logprobs``
    keeps the engine's per-token log-probs (of the raw logits divided by the
    temperature) on each rollout, which costs a (batch, new tokens, vocab) tensor.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        *,
        max_batch_size: int = 64,
        record_logprobs: bool = False,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        tokenizer = processor.tokenizer
        self.model = model
        self.processor = processor
        self.max_batch_size = max_batch_size
        self.record_logprobs = record_logprobs
        eos = tokenizer.convert_tokens_to_ids(IM_END)
        self.eos_token_id = int(
            eos if isinstance(eos, int) and eos != tokenizer.unk_token_id else tokenizer.eos_token_id
        )
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.eos_token_id)
        self.vision_ids = vision_token_ids(tokenizer)
        self.plain_id = plain_token_id(tokenizer)

    def generate(
        self,
        prompts: Sequence[RolloutPrompt],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> list[Rollout]:
        """Sample ``n`` responses per prompt; see :meth:`RolloutBackend.generate`."""
        check_generate_args(
            prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy
        )
        encoded = [encode_prompt(self.processor, prompt) for prompt in prompts]
        jobs = [(index, encoded[index]) for index in range(len(prompts)) for _ in range(n)]
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_k=None if greedy else 0,  # a top_k with greedy decoding only draws a warning
            top_p=1.0,
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            suppress_tokens=self.vision_ids or None,
            return_dict_in_generate=True,
            output_logits=self.record_logprobs,
        )
        logprob_temperature = 1.0 if greedy else temperature
        device = self.model.device
        was_training = self.model.training
        self.model.eval()
        rollouts: list[Rollout] = []
        try:
            with _seeded(seed, device), _own_generation_config(self.model), torch.no_grad():
                for start in range(0, len(jobs), self.max_batch_size):
                    chunk = jobs[start : start + self.max_batch_size]
                    rollouts += self._generate_chunk(chunk, config, logprob_temperature)
        finally:
            self.model.train(was_training)
        return rollouts

    def _generate_chunk(
        self, chunk: Sequence[tuple[int, PromptInputs]], config: GenerationConfig, temperature: float
    ) -> list[Rollout]:
        device = self.model.device
        batch = left_pad([prompt for _, prompt in chunk], self.pad_token_id)
        inputs = {key: value.to(device) for key, value in batch.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        output = self.model.generate(**inputs, generation_config=config)
        generated = output.sequences[:, batch["input_ids"].shape[1] :].cpu()  # (b, T)
        logprobs = None
        if config.output_logits:
            logits = torch.stack(output.logits, dim=1).float() / temperature  # (b, T, V)
            logprobs = (
                F.log_softmax(logits, dim=-1).gather(-1, generated.to(logits.device)[..., None])[..., 0].cpu()
            )
        tokenizer = self.processor.tokenizer
        results = []
        for row, (prompt_index, prompt) in enumerate(chunk):
            tokens = generated[row]
            eos_at = (tokens == self.eos_token_id).nonzero()
            clipped = eos_at.numel() == 0
            length = tokens.shape[0] if clipped else int(eos_at[0, 0]) + 1
            response = replace_tokens(tokens[:length], self.vision_ids, self.plain_id)
            results.append(
                Rollout(
                    prompt_index=prompt_index,
                    prompt=prompt,
                    response_ids=response,
                    response_text=tokenizer.decode(response, skip_special_tokens=True),
                    clipped=clipped,
                    logprobs=None if logprobs is None else logprobs[row, :length].clone(),
                )
            )
        return results
