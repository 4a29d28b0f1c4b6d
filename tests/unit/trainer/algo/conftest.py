import pytest
import torch
from PIL import Image

from trainer.models import build_tiny_model
from trainer.rollout import Rollout, RolloutPrompt, encode_prompt

QUESTIONS = ("What is 2+2?", "Find every dog in the picture and give its box.")


def make_rollouts(processor, lengths=(3, 7, 1, 5), seed=0):
    """Rollouts with fixed random responses of the given lengths over two image prompts of different sizes."""
    generator = torch.Generator().manual_seed(seed)
    prompts = [
        encode_prompt(
            processor,
            RolloutPrompt(
                [{"role": "user", "content": f"<image>{q}"}], [Image.new("RGB", size, (9, 90, 200))]
            ),
        )
        for q, size in zip(QUESTIONS, ((224, 224), (112, 56)), strict=True)
    ]
    rollouts = []
    for index, length in enumerate(lengths):
        # Plain tokens only: ids 7.. (0..6 are the special tokens).
        response = torch.randint(7, len(processor.tokenizer), (length,), generator=generator)
        rollouts.append(
            Rollout(
                prompt_index=index % 2,
                prompt=prompts[index % 2],
                response_ids=response,
                response_text="",
                clipped=False,
            )
        )
    return rollouts


@pytest.fixture
def tiny():
    torch.set_num_threads(1)
    return build_tiny_model("qwen2_vl", seed=0)
