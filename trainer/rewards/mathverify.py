"""The ``mathverify`` verifier: a ``\\boxed{}`` answer checked with Hugging Face's math-verify.

Accuracy is 1.0 iff ``math_verify.verify(gold, pred)`` holds, with V-Triune's parsing
(``MathVerifyVerifier`` in ``reward_server/verify.py``, after open-r1's ``accuracy_reward``):

- gold = ``parse(ground_truth.lower(), extraction_mode="first_match")`` (default extraction);
- pred = ``parse(response.lower(), extraction_mode="first_match")`` with one LaTeX extraction:
  normalisation nits off, malformed operators off, basic LaTeX on, boxed "all", units on;
  boxed matches tried first; nothing extracted without an anchor.

math-verify's own time limits use ``signal.alarm``, which works only in a process's main
thread: elsewhere (a worker thread, a Ray actor's thread) every call fails and every reward
silently becomes 0 (trl documents this in ``trl/rewards/accuracy_rewards.py``). They are switched
off here (``parsing_timeout=None``, ``timeout_seconds=None``); :class:`trainer.rewards.pool.RewardPool`
enforces a per-sample limit by killing the worker process instead.

Same decisions as calling math-verify directly, faster:

- each ground truth is parsed once per process (LRU cache);
- a decision is cached per (ground truth, parsed prediction): the 8 responses to a prompt often
  give the same answer;
- when gold and prediction share a non-empty string form, the answer is True without sympy:
  ``verify`` compares every (gold, pred) pair of the two lists and is True if any pair is,
  and two equal non-empty strings are such a pair.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import math_verify
from latex2sympy2_extended import NormalizationConfig
from sympy import srepr

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, register_verifier
from trainer.rewards.tags import four_tag_format

# A ground truth is a short answer; longer or more deeply nested LaTeX is refused at upload so
# that validating it stays fast (math-verify's parser is super-linear in nesting depth).
MAX_GROUND_TRUTH_CHARS = 2000
MAX_GROUND_TRUTH_DEPTH = 32
DECISION_CACHE_SIZE = 65536

PRED_EXTRACTION = (
    math_verify.LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            nits=False,
            malformed_operators=False,
            basic_latex=True,
            boxed="all",
            units=True,
        ),
        boxed_match_priority=0,
        try_extract_without_anchor=False,
    ),
)


class _TimeoutWarningFilter(logging.Filter):
    """Drop math-verify's "Timeout is disabled" warning: the pool enforces time limits."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_TimeoutWarningFilter())


def parse_gold(text: str) -> list:
    """math-verify's parse of a ground truth, as V-Triune does it (lower-cased, first match)."""
    return math_verify.parse(text.lower(), extraction_mode="first_match", parsing_timeout=None)


def parse_prediction(text: str) -> list:
    """math-verify's parse of a response, as V-Triune does it (boxed first, no anchor-less match)."""
    return math_verify.parse(
        text.lower(), extraction_config=PRED_EXTRACTION, extraction_mode="first_match", parsing_timeout=None
    )


def verify(gold: list, pred: list) -> bool:
    """``math_verify.verify`` without its signal-based timeout."""
    return bool(math_verify.verify(gold, pred, timeout_seconds=None))


@lru_cache(maxsize=4096)
def _cached_gold(text: str) -> tuple:
    return tuple(parse_gold(text))


def _key(item: object) -> tuple[str, str]:
    # srepr is structural (it spells out assumptions and float precision); str() is not.
    if isinstance(item, str):
        return ("s", item)
    return (type(item).__name__, srepr(item))


class _DecisionCache:
    """Bounded map (ground truth, parsed prediction) → decision, least recently used out first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple, bool] = OrderedDict()

    def get(self, key: tuple) -> bool | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: tuple, value: bool) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


_DECISIONS = _DecisionCache(DECISION_CACHE_SIZE)


def _strings(items: tuple | list) -> set[str]:
    return {item.strip() for item in items if isinstance(item, str) and item.strip()}


def math_accuracy(response: str, gold_text: str) -> float:
    """1.0 iff math-verify accepts ``response`` for the ground truth ``gold_text``.

    Raises :class:`RewardModelError` when the ground truth does not parse.

    >>> math_accuracy("so the answer is \\\\boxed{\\\\frac{1}{2}}", "\\\\boxed{0.5}")
    1.0
    >>> math_accuracy("\\\\boxed{3}", "\\\\boxed{4}")
    0.0
    """
    gold = _cached_gold(gold_text)
    if not gold:
        raise RewardModelError(
            "reward_model.ground_truth", f"ground truth does not parse: {gold_text[:200]!r}"
        )
    pred = parse_prediction(response)
    if not pred:
        return 0.0
    if _strings(gold) & _strings(pred):  # verify's string comparison of the pair is True
        return 1.0
    try:
        key = (gold_text, tuple(_key(item) for item in pred))
    except RecursionError:  # srepr of a pathological expression
        key = None
    if key is not None:
        cached = _DECISIONS.get(key)
        if cached is not None:
            return 1.0 if cached else 0.0
    decision = verify(list(gold), pred)
    if key is not None:
        _DECISIONS.put(key, decision)
    return 1.0 if decision else 0.0


def clear_caches() -> None:
    """Forget parsed ground truths and cached decisions (for tests and benchmarks)."""
    _cached_gold.cache_clear()
    _DECISIONS.clear()


def _depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth = max(depth - 1, 0)
    return deepest


def check_math_ground_truth(text: str) -> None:
    """Refuse a ground truth without a ``\\boxed{}`` that math-verify parses."""
    field = "reward_model.ground_truth"
    if len(text) > MAX_GROUND_TRUTH_CHARS:
        raise RewardModelError(
            field,
            f"ground_truth is {len(text)} characters long; at most {MAX_GROUND_TRUTH_CHARS} are allowed",
        )
    if "\\boxed{" not in text:
        raise RewardModelError(field, f"ground_truth must put the answer in \\boxed{{}}, got {text[:200]!r}")
    if _depth(text) > MAX_GROUND_TRUTH_DEPTH:
        raise RewardModelError(
            field, f"ground_truth nests braces deeper than {MAX_GROUND_TRUTH_DEPTH} levels"
        )
    if not _cached_gold(text):
        raise RewardModelError(field, f"math-verify cannot parse the ground truth {text[:200]!r}")


@register_verifier("mathverify")
class MathVerifyVerifier(Verifier):
    """Reasoning answers in ``\\boxed{}``: math-verify accuracy and the four-tag format reward.

    >>> r = MathVerifyVerifier().score("<think>\\n2+2\\n</think>\\n<answer>\\n\\\\boxed{4}\\n</answer>",
    ...                                {"ground_truth": "\\\\boxed{4}"}, ScoreContext())
    >>> r["accuracy_reward"], r["format_reward"]
    (1.0, 1.0)
    """

    def score(
        self, response: str, reward_model: Mapping[str, Any], context: ScoreContext
    ) -> dict[str, float]:
        self.check_parm_keys(reward_model)
        return {
            "accuracy_reward": math_accuracy(response, ground_truth(reward_model)),
            "format_reward": four_tag_format(response),
        }

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        self.check_parm_keys(reward_model)
        check_math_ground_truth(ground_truth(reward_model))
