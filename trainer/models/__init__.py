"""Models of the RL engine: Qwen2-VL / Qwen2.5-VL checkpoints and tiny random-init ones.

- :func:`load_model` reads any HF Qwen2-VL / Qwen2.5-VL checkpoint directory, offline;
- :func:`build_tiny_model` / :func:`save_tiny` make a random-init model for tests and the CPU demo;
- :func:`build_tokenizer` trains the tiny model's byte-level BPE tokenizer;
- :mod:`trainer.models.freeze` groups parameters (vit, connector, llm) for freezing and learning rates.
"""

from trainer.models.freeze import GROUPS, freeze, group_of, layer_of, module_groups, param_groups
from trainer.models.loading import load_model, load_processor
from trainer.models.processor import build_processor
from trainer.models.tiny import build_tiny_model, count_parameters, save_tiny, tiny_config
from trainer.models.tokenizer import SPECIAL_TOKENS, VISION_TOKENS, build_tokenizer

__all__ = [
    "GROUPS",
    "SPECIAL_TOKENS",
    "VISION_TOKENS",
    "build_processor",
    "build_tiny_model",
    "build_tokenizer",
    "count_parameters",
    "freeze",
    "group_of",
    "layer_of",
    "load_model",
    "load_processor",
    "module_groups",
    "param_groups",
    "save_tiny",
    "tiny_config",
]
