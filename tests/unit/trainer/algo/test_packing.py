import copy
import doctest
import importlib

import pytest
import torch

from trainer.algo import UpdateConfig, token_logprobs, update_policy
from trainer.algo.packing import pack_batch
from trainer.models import attention as varlen
from trainer.models import build_tiny_model
from trainer.rollout import Rollout, RolloutPrompt, collate, encode_prompt

from .conftest import make_rollouts


def _text_rollouts(processor, lengths=(4, 9, 2)):
    """Rollouts of text-only prompts of different lengths (no images at all)."""
    generator = torch.Generator().manual_seed(3)
    questions = ("Add 2 and 2.", "How many sides has a hexagon? Answer in one word, please.", "Why?")
    rollouts = []
    for index, length in enumerate(lengths):
        prompt = encode_prompt(processor, RolloutPrompt([{"role": "user", "content": questions[index]}], []))
        response = torch.randint(7, len(processor.tokenizer), (length,), generator=generator)
        rollouts.append(Rollout(index, prompt, response, "", False))
    return rollouts


def _mixed_rollouts(processor):
    """Two image prompts (two sizes) and a text-only prompt in one batch."""
    image, text = make_rollouts(processor, lengths=(6, 3)), _text_rollouts(processor, lengths=(5,))
    return [image[0], text[0], image[1]]


def _logprobs(model, rollouts, *, remove_padding, grad=False):
    batch = collate(rollouts, pad_token_id=0)
    with torch.set_grad_enabled(grad):
        logp, entropy = token_logprobs(
            model, batch.model_inputs(), batch.response_mask, remove_padding=remove_padding
        )
    return logp, entropy, batch.response_mask


def _model(arch, attention, seed):
    model, processor = build_tiny_model(arch, seed=seed)
    if attention == varlen.SDPA_VARLEN:
        varlen.register()
        model.set_attn_implementation({"text_config": attention})
    return model, processor


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("kind", ["images", "text", "mixed"])
@pytest.mark.parametrize("attention", ["sdpa", varlen.SDPA_VARLEN])
def test_packed_forward_equals_the_padded_one(arch, kind, attention):
    model, processor = _model(arch, attention, seed=2)
    rollouts = {
        "images": lambda: make_rollouts(processor),
        "text": lambda: _text_rollouts(processor),
        "mixed": lambda: _mixed_rollouts(processor),
    }[kind]()
    padded_logp, padded_entropy, mask = _logprobs(model, rollouts, remove_padding=False)
    packed_logp, packed_entropy, _ = _logprobs(model, rollouts, remove_padding=True)
    torch.testing.assert_close(packed_logp, padded_logp, atol=2e-5, rtol=0)
    torch.testing.assert_close(packed_entropy, padded_entropy, atol=2e-5, rtol=0)
    assert (packed_logp[mask == 0] == 0).all() and (packed_entropy[mask == 0] == 0).all()
    assert bool((packed_logp[mask > 0] != 0).all())


def test_packed_forward_equals_the_padded_one_with_eager_attention():
    model, processor = build_tiny_model("qwen2_vl", seed=2)
    model.set_attn_implementation("eager")
    assert model.config.text_config._attn_implementation == "eager"
    rollouts = make_rollouts(processor, lengths=(5, 1, 12))
    padded_logp, _, _ = _logprobs(model, rollouts, remove_padding=False)
    packed_logp, _, _ = _logprobs(model, rollouts, remove_padding=True)
    torch.testing.assert_close(packed_logp, padded_logp, atol=2e-5, rtol=0)


def test_a_packed_update_moves_the_weights_as_the_padded_one():
    model, processor = build_tiny_model("qwen2_vl", seed=6)
    rollouts = make_rollouts(processor, lengths=(3, 25, 1, 18, 2, 9))
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.3, 0.7])
    results = []
    for remove_padding in (False, True):
        clone = copy.deepcopy(model)
        optimizer = torch.optim.SGD(clone.parameters(), lr=1.0)
        config = UpdateConfig(micro_batch_size=4, max_grad_norm=1e9, remove_padding=remove_padding)
        metrics = update_policy(clone, optimizer, rollouts, advantages, pad_token_id=0, config=config)
        results.append((dict(clone.named_parameters()), metrics))
    start = dict(model.named_parameters())
    moved = False
    for name, param in results[1][0].items():
        torch.testing.assert_close(param, results[0][0][name], atol=2e-6, rtol=1e-4, msg=name)
        moved |= not torch.equal(param, start[name])
    assert moved
    for key in ("actor/pg_loss", "actor/entropy", "actor/ppo_kl"):
        assert results[1][1][key] == pytest.approx(results[0][1][key], abs=1e-5), key


def test_doctests():
    result = doctest.testmod(importlib.import_module("trainer.algo.packing"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("attention", ["sdpa", varlen.SDPA_VARLEN])
def test_packed_gradients_equal_the_padded_ones(attention):
    model, processor = _model("qwen2_vl", attention, seed=4)
    rollouts = make_rollouts(processor, lengths=(2, 11, 5, 1))
    grads = []
    for remove_padding in (False, True):
        model.zero_grad()
        logp, entropy, _ = _logprobs(model, rollouts, remove_padding=remove_padding, grad=True)
        (logp.sum() + 0.1 * entropy.sum()).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_the_packed_forward_sees_only_real_tokens():
    model, processor = build_tiny_model("qwen2_vl", seed=0)
    rollouts = make_rollouts(processor, lengths=(1, 30, 2, 3))
    widths = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, i, o: widths.append(i[0].shape))
    try:
        for remove_padding in (False, True):
            _logprobs(model, rollouts, remove_padding=remove_padding)
    finally:
        handle.remove()
    real = sum(r.prompt.length + r.response_length for r in rollouts)
    padded = collate(rollouts, pad_token_id=0).input_ids.shape
    assert widths == [padded, torch.Size([1, real])]
    assert real < padded[0] * padded[1]


@pytest.mark.parametrize("attention", ["sdpa", varlen.SDPA_VARLEN])
def test_packed_sequences_do_not_attend_to_each_other(attention):
    """Changing one sequence's response leaves every other sequence's log-probs as they were."""
    model, processor = _model("qwen2_vl", attention, seed=5)
    rollouts = make_rollouts(processor, lengths=(4, 6, 3))
    before, _, _ = _logprobs(model, rollouts, remove_padding=True)
    changed = list(rollouts)
    changed[1] = Rollout(1, rollouts[1].prompt, (rollouts[1].response_ids + 1) % 1000 + 7, "", False)
    after, _, _ = _logprobs(model, changed, remove_padding=True)
    assert not torch.equal(after[1], before[1])
    torch.testing.assert_close(after[0], before[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(after[2], before[2], atol=1e-6, rtol=0)


def test_pack_batch_refuses_a_batch_without_real_tokens_or_of_mismatched_shapes():
    model, _ = build_tiny_model("qwen2_vl", seed=0)
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="no real tokens to pack"):
        pack_batch(model, {"input_ids": ids, "attention_mask": ids, "mm_token_type_ids": ids})
    with pytest.raises(
        ValueError, match=r"attention_mask must be \(B, L\) like input_ids, got shape \(2, 4\)"
    ):
        pack_batch(model, {"input_ids": ids, "attention_mask": ids[:, :4], "mm_token_type_ids": ids})


def test_image_positions_of_the_packed_row_are_those_of_the_padded_batch():
    model, processor = build_tiny_model("qwen2_5_vl", seed=0)
    rollouts = make_rollouts(processor, lengths=(3, 8))
    batch = collate(rollouts, pad_token_id=0).model_inputs()
    packed = pack_batch(model, batch)
    positions, _ = model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch["image_grid_thw"],
        attention_mask=batch["attention_mask"],
    )
    real = batch["attention_mask"].bool()
    assert torch.equal(packed.inputs["position_ids"][1:, 0], positions[:, real])
    # the text row restarts at each sequence: 0 .. length - 1, twice
    lengths = [r.prompt.length + r.response_length for r in rollouts]
    expected = torch.cat([torch.arange(n) for n in lengths])
    assert torch.equal(packed.inputs["position_ids"][0, 0], expected)


def test_varlen_attention_attends_each_packed_sequence_alone(monkeypatch):
    """One causal SDPA call per sequence and layer, each as long as its sequence; a padded batch
    goes to plain sdpa and gives the same numbers bit for bit."""
    model, processor = _model("qwen2_vl", varlen.SDPA_VARLEN, seed=7)
    plain, _ = build_tiny_model("qwen2_vl", seed=7)
    rollouts = make_rollouts(processor, lengths=(4, 17, 2))
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counted(query, key, value, **kwargs):
        calls.append((query.shape[2], kwargs.get("is_causal")))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(varlen, "scaled_dot_product_attention", counted)
    _logprobs(model, rollouts, remove_padding=True)
    lengths = [r.prompt.length + r.response_length for r in rollouts]
    layers = model.config.text_config.num_hidden_layers
    assert calls == [(n, True) for _ in range(layers) for n in lengths]

    calls.clear()
    padded, _, _ = _logprobs(model, rollouts, remove_padding=False)
    reference, _, _ = _logprobs(plain, rollouts, remove_padding=False)
    assert calls == [] and torch.equal(padded, reference)


def test_sequence_lengths_doctest():
    result = doctest.testmod(varlen)
    assert result.attempted > 0 and result.failed == 0
