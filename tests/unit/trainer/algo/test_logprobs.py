import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from trainer.algo import entropy_from_logits, token_logprobs
from trainer.models import build_tiny_model
from trainer.rollout import collate

from .conftest import make_rollouts


def _reference(model, rollout, temperature=1.0):
    """Log-probs and entropies from the full logits of an unpadded batch of one."""
    inputs = rollout.model_inputs()
    logits = model(**inputs).logits[0].float() / temperature  # (P + R, V)
    r = rollout.response_length
    predicting = logits[-r - 1 : -1]
    logp = F.log_softmax(predicting, -1).gather(-1, rollout.response_ids[:, None])[:, 0]
    return logp, entropy_from_logits(predicting)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_padded_batch_matches_full_logits_of_each_sequence(arch, temperature):
    model, processor = build_tiny_model(arch, seed=1)
    rollouts = make_rollouts(processor)
    batch = collate(rollouts, pad_token_id=0)
    with torch.no_grad():
        logp, entropy = token_logprobs(
            model, batch.model_inputs(), batch.response_mask, temperature=temperature
        )
        for row, rollout in enumerate(rollouts):
            ref_logp, ref_entropy = _reference(model, rollout, temperature)
            r = rollout.response_length
            torch.testing.assert_close(logp[row, :r], ref_logp, atol=1e-5, rtol=0)
            torch.testing.assert_close(entropy[row, :r], ref_entropy, atol=1e-5, rtol=0)
    assert logp.shape == entropy.shape == batch.response_mask.shape
    # Padding positions are exactly 0.
    assert (logp[batch.response_mask == 0] == 0).all() and (entropy[batch.response_mask == 0] == 0).all()


def test_chunking_changes_neither_values_nor_gradients(tiny):
    model, processor = tiny
    batch = collate(make_rollouts(processor), pad_token_id=0)
    results = []
    for chunk_tokens in (1, 5, 4096):
        model.zero_grad()
        logp, entropy = token_logprobs(
            model, batch.model_inputs(), batch.response_mask, chunk_tokens=chunk_tokens
        )
        (logp.sum() + entropy.sum()).backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        results.append((logp.detach(), entropy.detach(), grad))
    for logp, entropy, grad in results[1:]:
        torch.testing.assert_close(logp, results[0][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(entropy, results[0][1], atol=1e-6, rtol=0)
        torch.testing.assert_close(grad, results[0][2], atol=1e-5, rtol=1e-4)


def test_gradients_reach_the_language_model(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(2, 4))
    batch = collate(rollouts, pad_token_id=0)
    logp, _ = token_logprobs(model, batch.model_inputs(), batch.response_mask)
    logp.sum().backward()
    layer = model.model.language_model.layers[0].mlp.up_proj.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, m: (b, m[:1]), "response_mask must be (4, R), got shape (1, 7)"),
        (lambda b, m: (b, torch.ones(4, 400)), "response width 400 must be in [1, "),
        (
            lambda b, m: ({k: v for k, v in b.items() if k != "mm_token_type_ids"}, m),
            "mm_token_type_ids is required with images (M-RoPE positions need it)",
        ),
        (lambda b, m: ({**b, "input_ids": b["input_ids"][0]}, m), "input_ids must be (B, L), got shape ("),
    ],
)
def test_rejects_bad_input(tiny, change, message):
    model, processor = tiny
    batch = collate(make_rollouts(processor), pad_token_id=0)
    inputs, mask = change(batch.model_inputs(), batch.response_mask)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        token_logprobs(model, inputs, mask)


def test_rejects_placeholder_tokens_in_responses(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(3, 2))
    poisoned = rollouts[1].response_ids.clone()
    poisoned[0] = model.config.image_token_id
    rollouts[1] = dataclasses.replace(rollouts[1], response_ids=poisoned)
    batch = collate(rollouts, pad_token_id=0)
    message = "a response contains an image/video placeholder token; "
    message += "replace it first (trainer.rollout.replace_tokens)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        token_logprobs(model, batch.model_inputs(), batch.response_mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"chunk_tokens": 0}, "chunk_tokens must be >= 1, got 0"),
    ],
)
def test_rejects_bad_settings(tiny, kwargs, message):
    model, processor = tiny
    batch = collate(make_rollouts(processor), pad_token_id=0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        token_logprobs(model, batch.model_inputs(), batch.response_mask, **kwargs)
