"""The examples in the reward modules' docstrings hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "trainer.rewards.api",
    "trainer.rewards.boxes",
    "trainer.rewards.choice",
    "trainer.rewards.coco_map",
    "trainer.rewards.detection",
    "trainer.rewards.exact",
    "trainer.rewards.matching",
    "trainer.rewards.mathverify",
    "trainer.rewards.number",
    "trainer.rewards.requests",
    "trainer.rewards.schedule",
    "trainer.rewards.tags",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
