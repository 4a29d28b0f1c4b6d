"""Greedy responses of both backends on one tiny architecture, in a process of its own.

Usage: python -m tests.vllm.greedy_probe ARCH; prints one JSON line: {"vllm": [...], "hf": [...]}
(token ids per prompt). A process holds one vLLM engine, hence a process per architecture.
"""

import json
import sys

from PIL import Image

from trainer.models import build_tiny_model
from trainer.rollout import HFRolloutBackend, RolloutPrompt
from trainer.rollout.vllm_backend import VLLMRolloutBackend


def image_prompt(question: str, size: tuple[int, int], color: tuple[int, int, int]) -> RolloutPrompt:
    return RolloutPrompt([{"role": "user", "content": f"<image>{question}"}], [Image.new("RGB", size, color)])


PROMPTS = [
    image_prompt("What is 2+2?", (224, 224), (200, 40, 40)),
    RolloutPrompt([{"role": "user", "content": "Count the apples on the table."}], []),
    image_prompt("Detect every dog in the picture.", (112, 168), (20, 160, 90)),
]


def main(arch: str) -> None:
    model, processor = build_tiny_model(arch, seed=0)
    responses = {}
    for name, backend in (
        ("vllm", VLLMRolloutBackend(model, processor, max_batch_size=8)),
        ("hf", HFRolloutBackend(model, processor, max_batch_size=8)),
    ):
        rollouts = backend.generate(PROMPTS, n=1, max_new_tokens=24, greedy=True)
        responses[name] = [r.response_ids.tolist() for r in rollouts]
    print(json.dumps(responses))


if __name__ == "__main__":
    main(sys.argv[1])
