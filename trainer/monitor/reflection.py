"""Reflection words in responses, counted as V-Triune's paper does (substring match, lower-cased).

Substring rather than whole-word matching is deliberate: it is what the paper's curves of
reflection ratio were computed with, so runs here compare with them. It also means "waiting"
counts for "wait" and "yeti" for "yet".
"""

from __future__ import annotations

from trainer.monitor.keys import REFLECTION_WORDS


def reflection_counts(text: str) -> dict[str, int]:
    """Non-overlapping occurrences of each reflection word in ``text.lower()``.

    >>> reflection_counts("Wait, let me re-check. Wait.")["wait"]
    2
    """
    lowered = text.lower()
    return {word: lowered.count(word) for word in REFLECTION_WORDS}


def is_reflective(text: str) -> bool:
    """True when the lower-cased text contains any reflection word.

    >>> is_reflective("Let me verify that."), is_reflective("The answer is 4.")
    (True, False)
    """
    lowered = text.lower()
    return any(word in lowered for word in REFLECTION_WORDS)
