"""The ``number`` verifier: an integer or decimal answer within a tolerance, for counting.

The number is the last one in the final answer (last ``\\boxed{}``, else ``<answer>`` content,
else the whole text); ``1,234`` is read as 1234. Accuracy is 1.0 iff
``|pred − gold| ≤ max(abs_tol, rel_tol · |gold|)``, with ``abs_tol`` and ``rel_tol`` from
``verifier_parm`` (default 0: exact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, is_number, register_verifier
from trainer.rewards.tags import final_answer, four_tag_format

_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")
MAX_NUMBER_CHARS = 400


def read_number(text: str) -> float | None:
    """The last number of ``text``'s final answer, or ``None``.

    >>> [read_number(t) for t in ("\\\\boxed{12}", "There are 1,234 cars.", "-0.5", "none")]
    [12.0, 1234.0, -0.5, None]
    """
    found = _NUMBER.findall(final_answer(text))
    if not found or len(found[-1]) > MAX_NUMBER_CHARS:
        return None
    value = float(found[-1].replace(",", "").replace("−", "-"))
    return value if math.isfinite(value) else None


def _tolerance(parm: Mapping[str, Any], key: str) -> float:
    value = parm.get(key)
    if value is None:
        return 0.0
    if not is_number(value) or float(value) < 0:
        raise RewardModelError(
            f"reward_model.verifier_parm.{key}", f"{key} must be a number >= 0, got {value!r}"
        )
    return float(value)


@register_verifier("number")
class NumberVerifier(Verifier):
    """A number within ``abs_tol`` / ``rel_tol`` of the ground truth.

    >>> NumberVerifier().score("7 dogs", {"ground_truth": "\\\\boxed{7}"}, ScoreContext())["accuracy_reward"]
    1.0
    """

    parm_keys = frozenset({"abs_tol", "rel_tol"})

    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        parm = self.check_parm_keys(reward_model)
        abs_tol, rel_tol = _tolerance(parm, "abs_tol"), _tolerance(parm, "rel_tol")
        gold = self._gold(reward_model)
        pred = read_number(response)
        hit = pred is not None and abs(pred - gold) <= max(abs_tol, rel_tol * abs(gold))
        return {"accuracy_reward": 1.0 if hit else 0.0, "format_reward": four_tag_format(response)}

    def _gold(self, reward_model: Mapping[str, Any]) -> float:
        text = ground_truth(reward_model)
        gold = read_number(text)
        if gold is None:
            raise RewardModelError(
                "reward_model.ground_truth",
                f"ground_truth must hold a number such as '\\\\boxed{{3}}', got {text[:200]!r}",
            )
        return gold

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        parm = self.check_parm_keys(reward_model)
        _tolerance(parm, "abs_tol")
        _tolerance(parm, "rel_tol")
        self._gold(reward_model)
