"""The ``exact`` verifier: normalised string match, for OCR-style answers.

Both sides are read from their final answer (last ``\\boxed{}``, else ``<answer>`` content,
else the whole text) and normalised: Unicode NFKC, case-folded, runs of whitespace made one
space, surrounding quotes, spaces and final punctuation removed. Accuracy is 1.0 iff equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, register_verifier
from trainer.rewards.tags import final_answer, four_tag_format

_SPACES = re.compile(r"\s+")
_STRIP = " \t\n\"'`“”‘’.,;:!?。，"


def normalize_text(text: str) -> str:
    """The comparison form of an answer.

    >>> normalize_text('  "Hello,   World!" ')
    'hello, world'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", text).strip(_STRIP)


@register_verifier("exact")
class ExactVerifier(Verifier):
    """Exact match after normalisation.

    >>> ExactVerifier().score("\\\\boxed{STOP }", {"ground_truth": "stop"}, ScoreContext())["accuracy_reward"]
    1.0
    """

    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        self.check_parm_keys(reward_model)
        gold = self._gold(reward_model)
        return {
            "accuracy_reward": 1.0 if normalize_text(final_answer(response)) == gold else 0.0,
            "format_reward": four_tag_format(response),
        }

    def _gold(self, reward_model: Mapping[str, Any]) -> str:
        gold = normalize_text(final_answer(ground_truth(reward_model)))
        if not gold:
            raise RewardModelError("reward_model.ground_truth", "ground_truth is empty after normalisation")
        return gold

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        self.check_parm_keys(reward_model)
        self._gold(reward_model)
