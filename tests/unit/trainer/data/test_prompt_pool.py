"""Prompt-pool augmentation applies to mathverify samples only."""

from __future__ import annotations

import copy
import random

import pytest

from trainer.data.prompt_pool import (
    BOXED_SENTENCES,
    STEP_SENTENCES,
    TAGGED_BOXED_SENTENCES,
    TAGGED_STEP_SENTENCES,
    PromptPool,
    augment_prompt,
    is_augmented,
)

from .factories import make_row


def _detection_row():
    return make_row(
        ability="cv_detection",
        reward_model={
            "ground_truth": "<answer>\n[]\n</answer>",
            "verifier": "detection",
            "format_ratio": 0.1,
        },
    )


def test_detection_rows_are_unchanged():
    row = _detection_row()
    out = augment_prompt(row, random.Random(0))
    assert out == row
    assert not is_augmented(row)


def test_rows_without_reward_model_are_unchanged():
    row = {"prompt": [{"role": "user", "content": "x"}]}
    assert augment_prompt(row, random.Random(0)) == row


def test_closeform_when_format_counts():
    row = make_row()  # format_ratio 0.1
    content = augment_prompt(row, random.Random(1))["prompt"][0]["content"]
    question, instruction = content.split("\n\n")
    assert question == "<image>What is 2 + 2?"
    step, boxed = next(
        (s, b) for s in TAGGED_STEP_SENTENCES for b in TAGGED_BOXED_SENTENCES if instruction == f"{s} {b}"
    )
    assert "<think>" in step and "<answer>" in step
    assert boxed.endswith("<think>\nreasoning here\n</think>\n<answer>\n\\boxed{final answer}\n</answer>")


def test_freeform_when_format_ratio_is_zero():
    row = make_row()
    row["reward_model"] = {**row["reward_model"], "format_ratio": 0.0}
    instruction = augment_prompt(row, random.Random(1))["prompt"][0]["content"].split("\n\n")[1]
    assert any(instruction == f"{s} {b}" for s in STEP_SENTENCES for b in BOXED_SENTENCES)
    assert "<think>" not in instruction


def test_missing_format_ratio_means_the_default_and_tags():
    row = make_row()
    del row["reward_model"]["format_ratio"]
    assert "<think>" in augment_prompt(row, random.Random(0))["prompt"][0]["content"]


def test_last_user_message_is_extended_and_input_untouched():
    row = make_row(
        prompt=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "<image>first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
        ]
    )
    before = copy.deepcopy(row)
    out = augment_prompt(row, random.Random(0))
    assert row == before
    assert [m["content"] for m in out["prompt"][:3]] == ["You are helpful.", "<image>first", "ok"]
    assert out["prompt"][3]["content"].startswith("second\n\n")


def test_every_sentence_is_reachable_and_boxed():
    seen = set()
    pool = PromptPool(seed=0)
    row = make_row()
    for key in range(400):
        seen.add(pool.augment(row, key)["prompt"][0]["content"].split("\n\n", 1)[1])
    # 5 tagged step sentences x 4 tagged boxed sentences = 20 combinations
    assert len(seen) == 20
    for sentence in BOXED_SENTENCES + TAGGED_BOXED_SENTENCES:
        assert "\\boxed{" in sentence


@pytest.mark.parametrize("key", [0, 1, "step-3/7"])
def test_pool_is_a_function_of_seed_and_key(key):
    row = make_row()
    assert PromptPool(seed=3).augment(row, key) == PromptPool(seed=3).augment(row, key)


def test_pool_varies_with_key():
    row = make_row()
    pool = PromptPool(seed=3)
    assert len({pool.augment(row, k)["prompt"][0]["content"] for k in range(20)}) > 1
