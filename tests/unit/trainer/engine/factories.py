"""Small hand-made rollouts, prompt items and reward results for the engine's unit tests."""

from __future__ import annotations

import torch

from trainer.engine.prompts import PromptItem
from trainer.rewards import RewardResult
from trainer.rollout import PromptInputs, Rollout, RolloutPrompt

MATH_RM = {"verifier": "mathverify", "ground_truth": "\\boxed{2}"}
DET_RM = {
    "verifier": "detection",
    "ground_truth": "<answer>\n[{'bbox_2d': [0, 0, 500, 500], 'label': 'dog'}]\n</answer>",
}


def prompt_inputs(length: int = 5, size: tuple[int, int] | None = (84, 56)) -> PromptInputs:
    ids = torch.arange(7, 7 + length)
    return PromptInputs(
        input_ids=ids,
        mm_token_type_ids=torch.zeros_like(ids),
        pixel_values=None,
        image_grid_thw=None,
        image_sizes=(size,) if size is not None else (),
    )


def rollout(prompt_index: int, length: int, text: str = "", *, clipped: bool = False, prompt_length: int = 5):
    return Rollout(
        prompt_index=prompt_index,
        prompt=prompt_inputs(prompt_length),
        response_ids=torch.full((length,), 9),
        response_text=text,
        clipped=clipped,
    )


def item(source: str, reward_model: dict) -> PromptItem:
    row = {"data_source": source, "prompt": [{"role": "user", "content": "q"}], "reward_model": reward_model}
    return PromptItem(source=source, row=row, prompt=RolloutPrompt([{"role": "user", "content": "q"}]))


def result(final: float, accuracy: float | None = None, error: str | None = None) -> RewardResult:
    accuracy = final if accuracy is None else accuracy
    return RewardResult({"accuracy_reward": accuracy, "format_reward": 0.0, "final_reward": final}, error)
