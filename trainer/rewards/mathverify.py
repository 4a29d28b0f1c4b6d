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

import importlib.metadata
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from itertools import groupby
from typing import Any

import math_verify
from latex2sympy2_extended import NormalizationConfig
from latex2sympy2_extended.latex2sympy2 import normalize_latex
from math_verify.parser import get_extraction_regexes
from sympy import srepr

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, ground_truth, register_verifier
from trainer.rewards.tags import four_tag_format

# A ground truth is a short answer; longer or more deeply nested LaTeX is refused at upload so
# that validating it stays fast (math-verify's parser is super-linear in nesting depth).
MAX_GROUND_TRUTH_CHARS = 2000
MAX_GROUND_TRUTH_DEPTH = 32
DECISION_CACHE_SIZE = 65536
# prediction_key mirrors the extraction of this math-verify version; with another, it stands aside.
_MIRRORS_MATH_VERIFY = importlib.metadata.version("math-verify") == "0.9.0"
_LATEX_GROUP = re.compile(r"^(first|next[1-5])_latex")

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


_NO_MATCH = ("", False)  # a response with no anchored answer: math-verify extracts nothing


@lru_cache(maxsize=1)
def _pattern_groups() -> list[list[tuple[re.Pattern[str], math_verify.LatexExtractionConfig]]]:
    """The prediction's extraction patterns, by priority, as ``parse`` orders them."""
    patterns = [
        (pattern, target, priority)
        for target_patterns, target in get_extraction_regexes(PRED_EXTRACTION)
        for pattern, priority in target_patterns
    ]
    ordered = sorted(patterns, key=lambda entry: entry[2])
    return [[(p, t) for p, t, _ in group] for _, group in groupby(ordered, key=lambda entry: entry[2])]


def prediction_key(text: str) -> tuple[str, bool] | None:
    """What math-verify's parse of ``text`` (lower-cased) depends on: (normalised LaTeX, percent).

    ``parse(..., extraction_mode="first_match")`` extracts only the top match (rightmost end,
    then leftmost start) of the highest-priority pattern group that matches; for a match of one
    LaTeX group its result is [latex2sympy(normalised), normalised] (or just the string when
    latex2sympy fails), a function of the normalised string and of the percent flag alone. So
    two responses with the same key get the same decision, and a key whose string equals the
    ground truth's is a match (``verify`` compares the string forms too). Follows math-verify
    0.9.0's ``extract_target_from_pred`` and ``extract_latex``; ``None`` (use the full parse)
    for another version, a match of several groups, or any error.
    """
    if not _MIRRORS_MATH_VERIFY:
        return None
    try:
        for group in _pattern_groups():
            best, best_key, best_target = None, (-1, 0), None
            for pattern, target in group:
                for match in pattern.finditer(text):
                    position = (match.end(), -match.start())
                    if position > best_key:  # strict: the first of equal positions, as a stable sort
                        best, best_key, best_target = match, position, target
            if best is None:
                continue
            groups = best.groupdict()
            found = [(name, value) for name, value in groups.items() if value and _LATEX_GROUP.match(name)]
            if len(found) != 1:
                return None
            name, latex = found[0]
            prefix, _, kind = name.partition("_")
            config = best_target.normalization_config
            if kind == "latexBoxed":
                config = replace(config, boxed="last")
            percent = bool(groups.get(f"{prefix}_percent"))
            return normalize_latex(latex, config=config), percent
        return _NO_MATCH
    except Exception:
        return None


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
    gold_strings = _strings(gold)
    key: tuple | None = None  # where the decision is cached
    answer = prediction_key(response.lower())
    if answer is not None:
        if answer == _NO_MATCH:
            return 0.0
        if answer[0].strip() in gold_strings:  # the same string form: verify is True, no sympy
            return 1.0
        key = (gold_text, "answer", *answer)
        cached = _DECISIONS.get(key)
        if cached is not None:
            return 1.0 if cached else 0.0
    pred = parse_prediction(response)
    if not pred:
        return 0.0
    if gold_strings & _strings(pred):
        decision = True
    else:
        if answer is None:
            try:
                key = (gold_text, "parsed", tuple(_key(item) for item in pred))
            except RecursionError:  # srepr of a pathological expression
                key = None
            cached = _DECISIONS.get(key) if key is not None else None
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
        gold = ground_truth(reward_model)  # not a string: refused
        try:
            accuracy = math_accuracy(response, gold)
        except RewardModelError as exc:  # it does not parse: accuracy 0, the format still scored
            context.problems.append(f"{exc.field}: {exc.message}")
            accuracy = 0.0
        return {"accuracy_reward": accuracy, "format_reward": four_tag_format(response)}

    def validate(self, reward_model: Mapping[str, Any]) -> None:
        self.check_parm_keys(reward_model)
        check_math_ground_truth(ground_truth(reward_model))
