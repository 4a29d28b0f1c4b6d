"""The ``choice`` verifier: a multiple-choice letter, however the response writes it.

The letter is read from the response's final answer (last ``\\boxed{}``, else ``<answer>``
content, else the whole text), trying in order:

1. the answer is just an option: ``B``, ``(B)``, ``B.``, ``B)``, ``[b]``;
2. an announced one, the last of them: ``answer: b``, ``The answer is (C).``, ``Answer - D``;
3. an option that starts the answer: ``B. 42``, ``(B) 42``;
4. the last capital letter in parentheses: ``… so (D)``.

Accuracy is 1.0 iff the letter equals the ground truth's (case-insensitive); format is the
four-tag format reward.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, register_verifier
from trainer.rewards.tags import final_answer, four_tag_format

_ALONE = re.compile(r"^[\(\[]?\s*([a-z])\s*[\)\]]?\s*[.:)]?$", re.IGNORECASE)
_ANNOUNCED = re.compile(
    r"\banswer\b(?:\s+is)?\s*[:\-=]?\s*(?:option\s+)?[\(\[]?([a-z])[\)\]]?(?![a-z0-9])", re.IGNORECASE
)
_LEADING_STRICT = re.compile(r"^(?:\(([a-z])\)|([a-z])[.:)])\s", re.IGNORECASE)
_PARENTHESISED = re.compile(r"\(([A-Z])\)")


def choice_letter(text: str) -> str | None:
    """The option letter ``text`` answers, upper-cased, or ``None``.

    >>> [choice_letter(t) for t in ("(B)", "B.", "answer: b", "The answer is C.", "B. 42", "A dog")]
    ['B', 'B', 'B', 'C', 'B', None]
    """
    answer = final_answer(text)
    match = _ALONE.match(answer)
    if match:
        return match.group(1).upper()
    announced = _ANNOUNCED.findall(answer)
    if announced:
        return announced[-1].upper()
    match = _LEADING_STRICT.match(answer)
    if match:
        return (match.group(1) or match.group(2)).upper()
    found = _PARENTHESISED.findall(answer)
    return found[-1] if found else None


@register_verifier("choice")
class ChoiceVerifier(Verifier):
    """Multiple choice: the response's option letter against the ground truth's.

    >>> ChoiceVerifier().score("<answer>\\n(b) a cat\\n</answer>", {"ground_truth": "B"}, ScoreContext())
    {'accuracy_reward': 1.0, 'format_reward': 0.25}
    """

    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        self.check_parm_keys(reward_model)
        gold = self._gold(reward_model)
        return {
            "accuracy_reward": 1.0 if choice_letter(response) == gold else 0.0,
            "format_reward": four_tag_format(response),
        }

    def _gold(self, reward_model: Mapping[str, Any]) -> str:
        text = ground_truth(reward_model)
        answer = final_answer(text)
        match = _ALONE.match(answer)
        if not match:
            raise RewardModelError(
                "reward_model.ground_truth",
                "ground_truth of a choice question must be one option letter such as 'B' or "
                f"'\\\\boxed{{B}}', "
                f"got {text[:200]!r}",
            )
        return match.group(1).upper()

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        self.check_parm_keys(reward_model)
        self._gold(reward_model)
