"""Global RNG states survive a checkpoint that is loaded with ``weights_only=True``."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from trainer.checkpoint import capture_rng, restore_rng


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_every_generator_continues_after_a_round_trip() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    expected = [_draws() for _ in range(3)]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    _draws()  # move every generator on
    restore_rng(torch.load(buffer, weights_only=True))
    assert [_draws() for _ in range(3)] == expected
