"""Name → factory tables shared by the engine's registries (rollout backends, scorers).

Registries fail loudly: registering a name twice raises, and an unknown name raises
listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def register_into(table: dict[str, T], kind: str, name: str) -> Callable[[T], T]:
    """A decorator adding its target to ``table`` under ``name``; ``kind`` names the table in errors."""

    def decorator(item: T) -> T:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        table[name] = item
        return item

    return decorator


def lookup(table: dict[str, T], kind: str, name: str) -> T:
    """The entry registered as ``name``, or a ValueError listing the known names."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return table[name]
