"""Fixtures of the data tests."""

from __future__ import annotations

import uuid

import fsspec
import pytest


@pytest.fixture
def memory_root():
    """A fresh memory:// directory, removed afterwards (memory:// is process-global)."""
    root = f"memory://data-tests-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)
