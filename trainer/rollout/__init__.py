"""Rollout: sampling responses from the policy.

:class:`RolloutBackend` is the interface, :func:`build_backend` builds one by
name ("hf"; "vllm" on a GPU or vLLM's CPU build, which imports vLLM only when built), and
:func:`collate` turns rollouts into a padded batch for the log-prob forward.
"""

from trainer.rollout.batch import RolloutBatch, collate
from trainer.rollout.hf import HFRolloutBackend
from trainer.rollout.prompts import encode_prompt, replace_tokens, to_chat_items
from trainer.rollout.registry import RolloutBackend, backend_names, build_backend, register_backend
from trainer.rollout.types import PromptInputs, Rollout, RolloutPrompt
from trainer.rollout.vllm_backend import VLLMRolloutBackend, vllm_cpu_build, vllm_importable, vllm_problems

__all__ = [
    "HFRolloutBackend",
    "PromptInputs",
    "Rollout",
    "RolloutBackend",
    "RolloutBatch",
    "RolloutPrompt",
    "VLLMRolloutBackend",
    "backend_names",
    "build_backend",
    "collate",
    "encode_prompt",
    "register_backend",
    "replace_tokens",
    "to_chat_items",
    "vllm_cpu_build",
    "vllm_importable",
    "vllm_problems",
]
