"""The examples in the data modules' docstrings hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "trainer.data.image_headers",
    "trainer.data.images",
    "trainer.data.mixture",
    "trainer.data.prompt_pool",
    "trainer.data.resolvers",
    "trainer.data.schema",
    "trainer.data.splits",
    "trainer.data.synth",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
