"""The verifier registry: ``reward_model["verifier"]`` names a :class:`Verifier` class.

Adding a verifier is one class and one registration::

    @register_verifier("mine")
    class MyVerifier(Verifier):
        def score(self, response, reward_model, context): ...  # accuracy_reward, format_reward
        def validate(self, reward_model): ...
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar, TypeVar

from trainer.rewards.errors import RewardModelError
from trainer.rewards.schedule import IoUSchedule

BASE_KEYS: tuple[str, ...] = ("accuracy_reward", "format_reward", "final_reward")
# verifier_parm keys of V-Triune's data that any verifier accepts (and may ignore): the
# released reward server passes verifier_parm to every verifier's constructor.
COMMON_PARM_KEYS: frozenset[str] = frozenset(
    {"verifier_style", "det_verifier_normalized", "det_reward_ratio"}
)


@dataclass(frozen=True)
class ScoreContext:
    """What a verifier may need besides the response and the reward_model."""

    step: int = 0  # current training step
    total_steps: int = 1  # steps of the whole run (step/total_steps drives the IoU schedule)
    image_size: tuple[int, int] | None = None  # (width, height) the model saw, for normalised boxes
    schedule: IoUSchedule = field(default_factory=IoUSchedule)  # detection IoU threshold schedule
    # What a verifier scored around (a ground truth it cannot read: accuracy 0, format still
    # scored, as V-Triune's reward server does); counted as the request's error.
    problems: list[str] = field(default_factory=list)


class Verifier(ABC):
    """Scores one response against one ``reward_model``; stateless apart from caches.

    :meth:`score` returns ``accuracy_reward``, ``format_reward`` and the verifier's breakdown
    keys (:attr:`extra_keys`, each ending in ``_reward``); :func:`compute_reward` adds
    ``final_reward``. Both :meth:`score` and :meth:`validate` raise :class:`RewardModelError`
    for a reward_model the verifier cannot use.
    """

    name: ClassVar[str] = ""
    extra_keys: ClassVar[tuple[str, ...]] = ()
    # verifier_parm keys this verifier reads, besides COMMON_PARM_KEYS
    parm_keys: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        """``accuracy_reward``, ``format_reward`` and :attr:`extra_keys` of ``response``, as floats."""

    @abstractmethod
    def validate(self, reward_model: Mapping[str, Any]) -> None:
        """Raise :class:`RewardModelError` unless this verifier can score ``reward_model``.

        Checks the verifier-specific part: ``verifier_parm`` and that the ground truth parses.
        The common fields (verifier name, ratios) are checked by ``validate_reward_model``.
        """

    def reward_keys(self) -> tuple[str, ...]:
        """Every key :func:`compute_reward` returns for this verifier."""
        return BASE_KEYS + self.extra_keys

    def zero_rewards(self) -> dict[str, float]:
        """The rewards of a response that failed: every key at 0.0."""
        return dict.fromkeys(self.reward_keys(), 0.0)

    def check_parm_keys(self, reward_model: Mapping[str, Any]) -> Mapping[str, Any]:
        """``verifier_parm`` as a mapping ({} when absent); unknown keys are refused."""
        parm = verifier_parm(reward_model)
        for key in parm:
            if key not in COMMON_PARM_KEYS and key not in self.parm_keys:
                allowed = COMMON_PARM_KEYS | self.parm_keys
                raise RewardModelError(
                    f"reward_model.verifier_parm.{key}",
                    f"unknown key {key!r} in verifier_parm of verifier {self.name!r}; "
                    f"known keys: {', '.join(sorted(allowed))}",
                )
        return parm


_REGISTRY: dict[str, type[Verifier]] = {}
_INSTANCES: dict[str, Verifier] = {}
V = TypeVar("V", bound=type[Verifier])


def register_verifier(name: str) -> Callable[[V], V]:
    """Class decorator registering a :class:`Verifier` under ``name``; a name registers once."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"verifier name must be a non-empty string without surrounding spaces, got {name!r}")

    def decorator(cls: V) -> V:
        if not (isinstance(cls, type) and issubclass(cls, Verifier)):
            raise TypeError(f"@register_verifier({name!r}) needs a Verifier subclass, got {cls!r}")
        if name in _REGISTRY:
            raise ValueError(f"verifier {name!r} is already registered (by {_REGISTRY[name].__qualname__})")
        bad = [key for key in cls.extra_keys if not key.endswith("_reward") or key in BASE_KEYS]
        if bad:
            raise ValueError(
                f"verifier {name!r}: extra_keys must end in '_reward' and not repeat {BASE_KEYS}: {bad}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def known_verifiers() -> list[str]:
    """Names of the registered verifiers, sorted."""
    return sorted(_REGISTRY)


def get_verifier(name: str) -> Verifier:
    """The verifier registered as ``name`` (one shared instance per name).

    Raises :class:`RewardModelError` (field ``reward_model.verifier``) listing the known names.
    """
    verifier = _INSTANCES.get(name) if isinstance(name, str) else None
    if verifier is not None:
        return verifier
    if not isinstance(name, str) or name not in _REGISTRY:
        raise RewardModelError(
            "reward_model.verifier",
            f"unknown verifier {name!r}; known verifiers: {', '.join(known_verifiers())}",
        )
    verifier = _INSTANCES[name] = _REGISTRY[name]()
    return verifier


def unregister_verifier(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a throw-away verifier)."""
    _REGISTRY.pop(name, None)
    _INSTANCES.pop(name, None)


def verifier_parm(reward_model: Mapping[str, Any]) -> Mapping[str, Any]:
    """``reward_model["verifier_parm"]`` as a mapping: {} when absent or null."""
    parm = reward_model.get("verifier_parm")
    if parm is None:
        return {}
    if not isinstance(parm, Mapping):
        raise RewardModelError(
            "reward_model.verifier_parm", f"verifier_parm must be an object (dict), got {type(parm).__name__}"
        )
    return parm


def is_number(value: object) -> bool:
    """A finite real number that is not a bool."""
    if type(value) is float or type(value) is int:  # the common case, without the ABC check
        return math.isfinite(value)
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def ratio(mapping: Mapping[str, Any], key: str, default: float, field_name: str) -> float:
    """``mapping[key]`` as a float in [0, 1] (``default`` when absent or null)."""
    value = mapping.get(key)
    if value is None:
        return default
    if not is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise RewardModelError(field_name, f"{key} must be a number in [0, 1], got {value!r}")
    return float(value)


def ground_truth(reward_model: Mapping[str, Any]) -> str:
    """``reward_model["ground_truth"]``, which must be a string."""
    value = reward_model.get("ground_truth")
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise RewardModelError("reward_model.ground_truth", f"ground_truth must be a string, got {got}")
    return value
