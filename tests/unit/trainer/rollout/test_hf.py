import contextlib
import re
from types import SimpleNamespace

import pytest
import torch

from trainer.algo import token_logprobs
from trainer.models import build_tiny_model
from trainer.rollout import HFRolloutBackend, collate
from trainer.rollout.prompts import vision_token_ids

from .conftest import image_prompt


@contextlib.contextmanager
def boosted_logits(model, token_ids, amount=100.0):
    """Add ``amount`` to the logits of ``token_ids`` at every position (a model that loves these tokens)."""

    def hook(_module, _inputs, output):
        output = output.clone()
        output[..., token_ids] += amount
        return output

    handle = model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_shapes_order_and_metadata(backend):
    prompts = [image_prompt("What is 2+2?"), image_prompt("Detect every dog in the picture.", (112, 168))]
    rollouts = backend.generate(prompts, n=3, max_new_tokens=12, seed=0)
    assert [r.prompt_index for r in rollouts] == [0, 0, 0, 1, 1, 1]
    # The n rollouts of a prompt share its processed inputs.
    assert rollouts[0].prompt is rollouts[2].prompt and rollouts[3].prompt is not rollouts[0].prompt
    assert [r.image_size for r in rollouts] == [(224, 224)] * 3 + [(112, 168)] * 3
    assert rollouts[3].prompt.image_grid_thw.tolist() == [[1, 12, 8]]  # (t, h, w) patches
    tok = backend.processor.tokenizer
    for r in rollouts:
        assert 1 <= r.response_length <= 12
        assert r.response_ids.dtype == torch.long and r.response_ids.dim() == 1
        assert r.logprobs.shape == (r.response_length,)
        ends_with_eos = int(r.response_ids[-1]) == backend.eos_token_id
        assert r.clipped == (not ends_with_eos)
        assert r.clipped == (r.response_length == 12) or not r.clipped
        assert backend.eos_token_id not in r.response_ids[:-1].tolist()
        assert r.response_text == tok.decode(r.response_ids, skip_special_tokens=True)


def test_clipping_flag(tiny):
    model, processor = tiny
    backend = HFRolloutBackend(model, processor)
    eos = backend.eos_token_id
    long = backend.generate([image_prompt()], n=2, max_new_tokens=5, seed=0)
    with boosted_logits(model, [eos]):
        short = backend.generate([image_prompt()], n=2, max_new_tokens=5, seed=0)
    suppressed = [t for r in long for t in r.response_ids.tolist()]
    assert eos not in suppressed  # an untrained model almost never stops within 5 tokens (p ~ 5/1024)
    assert [(r.response_length, r.clipped) for r in long] == [(5, True), (5, True)]
    assert [(r.response_ids.tolist(), r.clipped, r.response_text) for r in short] == [([eos], False, "")] * 2


def test_vision_tokens_are_never_generated(tiny):
    model, processor = tiny
    vision = vision_token_ids(processor.tokenizer)
    # A model that prefers vision tokens by +100 logits everywhere:
    # without suppression every token would be one.
    with boosted_logits(model, vision):
        rollouts = HFRolloutBackend(model, processor).generate(
            [image_prompt()], n=4, max_new_tokens=16, seed=0
        )
        greedy = HFRolloutBackend(model, processor).generate(
            [image_prompt()], n=1, max_new_tokens=16, greedy=True, seed=0
        )
    for r in rollouts + greedy:
        assert not set(r.response_ids.tolist()) & set(vision)


def test_vision_tokens_in_a_response_are_replaced(tiny, monkeypatch):
    model, processor = tiny
    backend = HFRolloutBackend(model, processor)
    vision = vision_token_ids(processor.tokenizer)
    word = processor.tokenizer.encode(" answer", add_special_tokens=False)
    original = model.generate

    def generate_with_vision_tokens(**kwargs):
        # Another engine might emit them: prompt + [word, image_pad, vision_start, word, video_pad, eos].
        prompt = kwargs["input_ids"]
        tail = torch.tensor(word + [vision[2], vision[0]] + word + [vision[3], backend.eos_token_id])
        sequences = torch.cat([prompt, tail.expand(prompt.shape[0], -1)], dim=1)
        return SimpleNamespace(sequences=sequences, logits=None)

    monkeypatch.setattr(model, "generate", generate_with_vision_tokens)
    rollouts = backend.generate([image_prompt()], n=2, max_new_tokens=8, seed=0)
    monkeypatch.setattr(model, "generate", original)
    plain = backend.plain_id
    assert rollouts[0].response_ids.tolist() == word + [plain, plain] + word + [plain, backend.eos_token_id]
    assert rollouts[0].response_text == " answer   answer "
    # The log-prob forward accepts the cleaned responses (a stray image pad would break it).
    batch = collate(rollouts, pad_token_id=backend.pad_token_id)
    logp, _ = token_logprobs(model, batch.model_inputs(), batch.response_mask)
    assert torch.isfinite(logp).all()


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recomputed_logprobs_equal_generation_logprobs(arch, temperature):
    # Left-padded batch: prompts of different lengths and image sizes, ragged responses.
    model, processor = build_tiny_model(arch, seed=2)
    backend = HFRolloutBackend(model, processor, record_logprobs=True)
    prompts = [
        image_prompt("Hi"),
        image_prompt("Find the value of x in the triangle, step by step.", (168, 112)),
    ]
    with boosted_logits(model, [backend.eos_token_id], amount=5.5):  # some responses stop early
        rollouts = backend.generate(prompts, n=3, max_new_tokens=10, temperature=temperature, seed=1)
        assert len({r.response_length for r in rollouts}) > 1
        assert len({r.prompt.length for r in rollouts}) > 1
        batch = collate(rollouts, pad_token_id=backend.pad_token_id)
        with torch.no_grad():
            logp, _ = token_logprobs(
                model, batch.model_inputs(), batch.response_mask, temperature=temperature
            )
    for row, r in enumerate(rollouts):
        torch.testing.assert_close(logp[row, : r.response_length], r.logprobs, atol=1e-5, rtol=0)


def test_seeded_generation_is_reproducible_and_leaves_global_rng(backend):
    torch.manual_seed(7)
    expected_draw = torch.rand(2)
    torch.manual_seed(7)
    first = backend.generate([image_prompt()], n=3, max_new_tokens=8, seed=11)
    assert torch.equal(torch.rand(2), expected_draw)
    second = backend.generate([image_prompt()], n=3, max_new_tokens=8, seed=11)
    other = backend.generate([image_prompt()], n=3, max_new_tokens=8, seed=12)
    ids = [r.response_ids.tolist() for r in first]
    assert ids == [r.response_ids.tolist() for r in second]
    assert ids != [r.response_ids.tolist() for r in other]
    assert len({tuple(i) for i in ids}) == 3  # the n samples of one prompt differ


def test_greedy_is_deterministic_across_samples(backend):
    rollouts = backend.generate([image_prompt()], n=3, max_new_tokens=8, greedy=True)
    assert len({tuple(r.response_ids.tolist()) for r in rollouts}) == 1


def test_small_batches_keep_order(tiny):
    model, processor = tiny
    backend = HFRolloutBackend(model, processor, max_batch_size=2)
    rollouts = backend.generate(
        [image_prompt("a"), image_prompt("b"), image_prompt("c")], n=3, max_new_tokens=3
    )
    assert [r.prompt_index for r in rollouts] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_model_state_is_restored(tiny):
    model, processor = tiny
    model.train()
    config = model.generation_config
    HFRolloutBackend(model, processor).generate([image_prompt()], n=1, max_new_tokens=2)
    assert model.training
    assert model.generation_config is config


def test_checkpoint_sampling_defaults_are_ignored(tiny):
    # A hub checkpoint may ship top_k=1 (greedy in disguise); sampling must still vary.
    model, processor = tiny
    model.generation_config.top_k = 1
    model.generation_config.temperature = 0.01
    rollouts = HFRolloutBackend(model, processor).generate([image_prompt()], n=4, max_new_tokens=6, seed=0)
    assert len({tuple(r.response_ids.tolist()) for r in rollouts}) == 4


@pytest.mark.parametrize(
    ("prompts", "kwargs", "message"),
    [
        ([], {}, "prompts is empty: nothing to generate"),
        ([image_prompt()], {"n": 0}, "n must be >= 1, got 0"),
        ([image_prompt()], {"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ([image_prompt()], {"temperature": 0.0}, "temperature must be > 0 when sampling, got 0.0"),
        ([image_prompt()], {"temperature": float("nan")}, "temperature must be > 0 when sampling, got nan"),
    ],
)
def test_rejects_bad_arguments(backend, prompts, kwargs, message):
    arguments = {"n": 2, "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        backend.generate(prompts, **arguments)


def test_greedy_accepts_any_temperature(backend):
    assert len(backend.generate([image_prompt()], n=1, max_new_tokens=2, temperature=0.0, greedy=True)) == 1


def test_rejects_bad_batch_size(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match="^max_batch_size must be >= 1, got 0$"):
        HFRolloutBackend(model, processor, max_batch_size=0)
