"""Export a policy as a Hugging Face model directory (``save_pretrained`` of model and processor).

The directory reads like a hub checkpoint: ``config.json`` + safetensors weights, the
tokenizer files (with its chat template) and ``preprocessor_config.json``, so that
:func:`trainer.models.load_model` (and ``from_pretrained``) loads it and it can be the
``model.path`` of another run. It is written atomically (:mod:`trainer.checkpoint.atomic`).
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.checkpoint.atomic import atomic_directory
from trainer.models.loading import save_model


def write_policy(model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path) -> Path:
    """Write ``model`` and ``processor`` into ``out_dir`` (a new, not yet existing directory)."""
    return save_model(model, processor, out_dir)


def export_policy(model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path) -> Path:
    """Atomically write (or replace) the HF model directory ``out_dir``; return its path."""
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        write_policy(model, processor, tmp)
    return out
