"""The rollout backend interface and the registry of backends by name.

A backend turns prompts into :class:`~trainer.rollout.types.Rollout` objects. The
interface is one method so that a GPU engine (vLLM) can slot in next to the
Hugging Face one; the update never depends on which engine sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from trainer.registry import lookup, register_into
from trainer.rollout.types import Rollout, RolloutPrompt


@runtime_checkable
class RolloutBackend(Protocol):
    """Samples ``n`` responses per prompt."""

    def generate(
        self,
        prompts: Sequence[RolloutPrompt],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> list[Rollout]:
        """Return ``len(prompts) * n`` rollouts, prompt-major: index ``i * n + j`` is sample j of prompt i."""
        ...


def check_generate_args(
    prompts: Sequence[RolloutPrompt], *, n: int, max_new_tokens: int, temperature: float, greedy: bool
) -> None:
    """Raise ValueError for arguments no backend can generate with."""
    if len(prompts) == 0:
        raise ValueError("prompts is empty: nothing to generate")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")


B = TypeVar("B", bound=Callable[..., RolloutBackend])

_BACKENDS: dict[str, Callable[..., RolloutBackend]] = {}


def register_backend(name: str) -> Callable[[B], B]:
    """Class decorator registering a backend factory under ``name``; a name registers once."""

    return register_into(_BACKENDS, "rollout backend", name)


def backend_names() -> list[str]:
    """Registered backend names, sorted."""
    return sorted(_BACKENDS)


def build_backend(name: str, **kwargs: Any) -> RolloutBackend:
    """Build the backend registered as ``name`` with its constructor's keyword arguments."""
    return lookup(_BACKENDS, "rollout backend", name)(**kwargs)
