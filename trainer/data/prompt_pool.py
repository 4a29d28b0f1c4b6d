"""Prompt-pool augmentation of ``mathverify`` samples (V-Triune, arXiv 2505.18129, §4 data).

V-Triune appends two randomly chosen instruction sentences to the last user
message of every reasoning sample: one asking for step-by-step reasoning, one
asking for the final answer in ``\\boxed{}``. When the sample's format reward
counts (``format_ratio > 0``) the "close-form" variant also asks for the
``<think>``/``<answer>`` layout that the format reward scores
(``<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>``). Samples of other
verifiers (detection, grounding) carry their own instructions and are left
unchanged. Varying the wording keeps the policy from keying on one phrasing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

# Default α_fmt of DESIGN.md §4, used when a sample has no format_ratio.
DEFAULT_FORMAT_RATIO = 0.1
AUGMENTED_VERIFIERS = ("mathverify",)

STEP_SENTENCES: tuple[str, ...] = (
    "Reason through the problem one step at a time.",
    "Work it out step by step before answering.",
    "Show your reasoning step by step.",
    "Think it through carefully, step by step.",
    "Explain each step of your solution.",
    "Solve it step by step and explain how you get there.",
    "Lay out your reasoning in clear steps.",
    "Go through the solution step by step.",
    "Describe your reasoning one step after another.",
    "Break the problem into steps and solve each of them.",
)
BOXED_SENTENCES: tuple[str, ...] = (
    "Put the final answer in \\boxed{}.",
    "Write the final answer inside \\boxed{}.",
    "Give the final answer within \\boxed{}.",
    "Enclose the final answer in \\boxed{}.",
    "Finish with the answer in \\boxed{}.",
    "Present the final result inside \\boxed{}.",
    "State the final answer in \\boxed{}.",
    "Place the answer in \\boxed{} at the end.",
)
_TAGS_EXAMPLE = "<think>\nreasoning here\n</think>\n<answer>\n\\boxed{final answer}\n</answer>"
TAGGED_STEP_SENTENCES: tuple[str, ...] = (
    "Reason step by step inside <think> </think> tags, then give the final answer inside"
    " <answer> </answer> tags.",
    "Think the problem through step by step within <think> </think>, and put the final answer within"
    " <answer> </answer>.",
    "Write your step-by-step reasoning between <think> and </think>, and the final answer between <answer>"
    " and </answer>.",
    "First reason step by step in <think> </think> tags; then answer in <answer> </answer> tags.",
    "Solve it step by step: reasoning goes in <think> </think> tags and the final answer in"
    " <answer> </answer> tags.",
)
TAGGED_BOXED_SENTENCES: tuple[str, ...] = (
    f"Inside the answer tags, put the final answer in \\boxed{{}}, like this: {_TAGS_EXAMPLE}",
    f"The answer itself goes in \\boxed{{}}. For example: {_TAGS_EXAMPLE}",
    f"Wrap the final answer in \\boxed{{}} within the answer tags, for instance: {_TAGS_EXAMPLE}",
    f"Also box the final answer with \\boxed{{}}. Follow this layout: {_TAGS_EXAMPLE}",
)


def is_augmented(row: Mapping[str, Any]) -> bool:
    """Whether the prompt pool applies to ``row`` (its verifier is ``mathverify``)."""
    reward_model = row.get("reward_model")
    return isinstance(reward_model, Mapping) and reward_model.get("verifier") in AUGMENTED_VERIFIERS


def instruction(format_ratio: float, rng: random.Random) -> str:
    """Two sentences: a step-by-step one and a boxed-answer one (tagged when format_ratio > 0)."""
    if format_ratio > 0:
        return f"{rng.choice(TAGGED_STEP_SENTENCES)} {rng.choice(TAGGED_BOXED_SENTENCES)}"
    return f"{rng.choice(STEP_SENTENCES)} {rng.choice(BOXED_SENTENCES)}"


def augment_prompt(row: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy of ``row`` whose last user message ends with the instruction; ``row`` is not modified.

    Rows that are not ``mathverify`` come back as an unchanged (shallow) copy.
    """
    copy = dict(row)
    if not is_augmented(row):
        return copy
    format_ratio = row["reward_model"].get("format_ratio")
    if format_ratio is None:
        format_ratio = DEFAULT_FORMAT_RATIO
    prompt = [dict(message) for message in row["prompt"]]
    target = max((i for i, m in enumerate(prompt) if m.get("role") == "user"), default=len(prompt) - 1)
    prompt[target]["content"] = f"{prompt[target]['content']}\n\n{instruction(float(format_ratio), rng)}"
    copy["prompt"] = prompt
    return copy


class PromptPool:
    """Seeded augmentation: the sentences for a row depend only on (seed, key).

    Keying by something stable (the sample's position in the data stream)
    makes a resumed run write the same prompts as an uninterrupted one.

    >>> pool = PromptPool(seed=3)
    >>> prompt = [{"role": "user", "content": "<image>1+1?"}]
    >>> row = {"prompt": prompt, "reward_model": {"verifier": "mathverify"}}
    >>> pool.augment(row, key=7) == pool.augment(row, key=7)
    True
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def augment(self, row: Mapping[str, Any], key: object) -> dict[str, Any]:
        """``augment_prompt`` with a generator seeded by (seed, key)."""
        return augment_prompt(row, random.Random(f"{self.seed}\x1f{key}"))
