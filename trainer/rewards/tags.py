"""Response text helpers shared by the verifiers: answer tags and the four-tag format reward."""

from __future__ import annotations

import re

THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n"
ANSWER_OPEN = "\n<answer>\n"
ANSWER_CLOSE = "\n</answer>"
_BRACES = re.compile(r"[{}]")


def four_tag_format(text: str) -> float:
    """0.25 for each of ``<think>\\n``, ``\\n</think>\\n``, ``\\n<answer>\\n``, ``\\n</answer>`` seen once.

    The format reward of V-Triune's reasoning verifiers (after open-r1's ``tag_count_reward``).

    >>> four_tag_format("<think>\\nhm\\n</think>\\n<answer>\\n4\\n</answer>")
    1.0
    >>> four_tag_format("<think>\\nhm\\n</think>\\n4")
    0.5
    """
    score = 0.0
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        if text.count(tag) == 1:
            score += 0.25
    return score


def answer_content(text: str) -> str:
    """The text between the first ``<answer>`` and the next ``</answer>``, stripped ("" if none).

    Same result as ``re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)``, in linear time
    (the regular expression is quadratic on a response full of unclosed ``<answer>`` tags).

    >>> answer_content("x <answer> [1] </answer> <answer>2</answer>")
    '[1]'
    """
    start = text.find("<answer>")
    if start < 0:
        return ""
    end = text.find("</answer>", start + len("<answer>"))
    if end < 0:
        return ""
    return text[start + len("<answer>") : end].strip()


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` whose braces balance, or ``None``.

    One pass over the braces (linear time, also on a response full of unclosed ``\\boxed{``).

    >>> last_boxed(r"\\boxed{1} then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    if "\\boxed{" not in text:
        return None
    closing: dict[int, int] = {}  # position of "{" -> position of its "}"
    stack: list[int] = []
    for match in _BRACES.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            closing[stack.pop()] = match.start()
    start = text.rfind("\\boxed{")
    while start >= 0:
        brace = start + len("\\boxed")
        if brace in closing:
            return text[brace + 1 : closing[brace]]
        start = text.rfind("\\boxed{", 0, start)
    return None


def final_answer(text: str) -> str:
    """Where a short answer is read from: the last ``\\boxed{}``, else the ``<answer>`` content, else all.

    >>> final_answer("<think>\\nA or B?\\n</think>\\n<answer>\\nB\\n</answer>")
    'B'
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    content = answer_content(text)
    return content if content else text.strip()
