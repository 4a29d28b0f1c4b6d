"""Supervised warm-start on the RL sample format (``python -m trainer sft``).

- :func:`target_response` writes the response a sample's verifier gives full marks to;
- :func:`run_sft` trains on those targets (loss on response tokens only) and writes a
  Hugging Face model directory usable as ``model.path`` of a GRPO run.
"""

from trainer.sft.targets import THINK_TEXT, register_target, target_response, target_verifiers
from trainer.sft.train import SFTOptions, SFTSummary, build_example, run_sft, sft_loss

__all__ = [
    "THINK_TEXT",
    "SFTOptions",
    "SFTSummary",
    "build_example",
    "register_target",
    "run_sft",
    "sft_loss",
    "target_response",
    "target_verifiers",
]
