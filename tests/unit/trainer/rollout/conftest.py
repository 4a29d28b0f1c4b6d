import pytest
import torch
from PIL import Image

from trainer.models import build_tiny_model
from trainer.rollout import HFRolloutBackend, RolloutPrompt


def image_prompt(question: str = "What is 2+2?", size: tuple[int, int] = (224, 224)) -> RolloutPrompt:
    return RolloutPrompt(
        [{"role": "user", "content": f"<image>{question}"}], [Image.new("RGB", size, (200, 40, 40))]
    )


@pytest.fixture
def tiny():
    torch.set_num_threads(1)
    return build_tiny_model("qwen2_vl", seed=0)


@pytest.fixture
def backend(tiny):
    model, processor = tiny
    return HFRolloutBackend(model, processor, record_logprobs=True)
