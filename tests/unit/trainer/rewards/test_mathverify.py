"""The mathverify verifier: the same decisions as math-verify itself, and the four-tag format."""

from __future__ import annotations

import random
import threading

import pytest

from trainer.rewards import RewardModelError, compute_reward, validate_reward_model
from trainer.rewards.mathverify import clear_caches, math_accuracy, parse_prediction, prediction_key

from . import reference

# (gold answer, answers that mean the same, answers that do not)
ANSWERS = [
    ("4", ["4", "4.0", "\\frac{8}{2}", "2+2", "04"], ["5", "-4", "\\frac{1}{4}"]),
    ("\\frac{1}{2}", ["0.5", "\\frac12", "1/2", "\\dfrac{1}{2}", "50\\%"], ["2", "\\frac{1}{3}", "0.51"]),
    ("3\\sqrt{2}", ["\\sqrt{18}", "3 \\sqrt 2", "\\sqrt{2}\\cdot 3"], ["3\\sqrt{3}", "\\sqrt{2}", "4.24"]),
    ("x^2+1", ["1+x^2", "x^{2}+1", "(x^2+1)"], ["x^2-1", "x+1", "2x"]),
    ("(1,2)", ["(1, 2)", "(1,2)"], ["[1,2]", "(2,1)", "(1,3)"]),
    ("\\{1,2,3\\}", ["\\{3,2,1\\}", "1,2,3"], ["\\{1,2\\}", "\\{1,2,4\\}"]),
    ("\\pi", ["\\pi", "3.14159265358979"], ["3.14", "2\\pi", "\\frac{\\pi}{2}"]),
    ("-7", ["-7", "-7.0", "-\\frac{14}{2}"], ["7", "-6"]),
    ("1000", ["1000", "1,000", "10^3"], ["100", "1001"]),
    (
        "\\frac{\\sqrt{3}}{2}",
        ["\\frac{1}{2}\\sqrt{3}", "\\frac{\\sqrt3}{2}"],
        ["\\frac{\\sqrt{2}}{2}", "\\sqrt{3}"],
    ),
    ("30^\\circ", ["30", "30^{\\circ}", "30°"], ["60^\\circ", "45"]),
    ("2.5", ["2.5", "\\frac{5}{2}", "2\\frac{1}{2}"], ["2.05", "25"]),
    ("x=3", ["3", "x=3", "x = 3"], ["x=4", "y=2"]),
    ("\\text{B}", ["B", "\\text{B}", "\\textbf{B}"], ["C", "A"]),
    ("12\\%", ["12\\%", "12", "0.12"], ["13\\%", "1.2"]),
]

WRAPPERS = [
    "\\boxed{{{}}}",
    "The answer is \\boxed{{{}}}.",
    "<think>\nLet me compute. Wait, check again.\n</think>\n<answer>\nSo it is \\boxed{{{}}}\n</answer>",
    "First \\boxed{{0}}, then after re-checking: \\boxed{{{}}}",
    "$${}$$",  # no box: no anchor, so nothing is extracted
    "answer: {}",
    "\\boxed{{{}}} and also \\boxed{{99}}",
]


def _pairs(seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        gold, same, other = rng.choice(ANSWERS)
        pred = rng.choice(same + other + ["", "no idea"])
        gold_text = rng.choice(["\\boxed{{{}}}", "The answer is $\\boxed{{{}}}$."]).format(gold)
        pairs.append((gold_text, rng.choice(WRAPPERS).format(pred)))
    return pairs


@pytest.mark.parametrize("seed", range(3))
def test_decisions_equal_math_verify(seed):
    clear_caches()
    pairs = _pairs(seed, 120)
    expected = [reference.math_accuracy(pred, gold) for gold, pred in pairs]
    first = [math_accuracy(pred, gold) for gold, pred in pairs]
    assert first == expected
    # again, in another order, with warm caches: same decisions
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    assert [math_accuracy(pairs[i][1], pairs[i][0]) for i in order] == [expected[i] for i in order]
    assert 0 < sum(expected) < len(expected)


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("\\boxed{42}", "\\boxed{42}", 1.0),
        ("42", "\\boxed{42}", 0.0),  # no box in the response: no anchor, nothing extracted
        ("\\boxed{42}", "42", 1.0),  # a ground truth parses without a box too
        ("\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", 1.0),
        ("\\BOXED{3}", "\\boxed{3}", 1.0),  # both sides are lower-cased first
    ],
)
def test_hand_picked(response, gold, expected):
    assert math_accuracy(response, gold) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nx\n</think>\n<answer>\ny\n</answer>", 1.0),
        ("<think>\nx\n</think>\ny", 0.5),
        ("<think>\nx\n</think>\n<answer>\ny\n</answer>\n</answer>", 0.75),  # the closing tag twice
        ("<think>x</think><answer>y</answer>", 0.0),  # no newlines
        ("", 0.0),
    ],
)
def test_four_tag_format(text, expected):
    rewards = compute_reward(text, {"verifier": "mathverify", "ground_truth": "\\boxed{1}"})
    assert rewards["format_reward"] == expected
    assert rewards["format_reward"] == reference.math_format(text)


def test_final_reward_combination():
    model = {
        "verifier": "mathverify",
        "ground_truth": "\\boxed{2}",
        "accuracy_ratio": 0.8,
        "format_ratio": 0.2,
    }
    rewards = compute_reward("<think>\nx\n</think>\n\\boxed{2}", model)
    # accuracy 1, format 0.5: 1·(0.8/1.0) + 0.5·(0.2/1.0) = 0.9
    assert rewards == {"accuracy_reward": 1.0, "format_reward": 0.5, "final_reward": pytest.approx(0.9)}


def test_works_in_a_worker_thread():
    # math-verify's signal-based timeouts would make every reward 0 outside the main thread
    out = []
    thread = threading.Thread(
        target=lambda: out.append(math_accuracy("\\boxed{\\frac{2}{4}}", "\\boxed{0.5}"))
    )
    thread.start()
    thread.join()
    assert out == [1.0]


def test_unparseable_ground_truth():
    problems: list[str] = []
    rewards = compute_reward(
        "\\boxed{1}", {"verifier": "mathverify", "ground_truth": "\\boxed{}"}, problems=problems
    )
    assert rewards["accuracy_reward"] == 0.0
    assert problems[0].startswith("reward_model.ground_truth: ")
    with pytest.raises(RewardModelError):
        validate_reward_model({"verifier": "mathverify", "ground_truth": "\\boxed{}"})


@pytest.mark.parametrize(
    "response",
    ["", "x" * 1_000_000, "\x00\xff\udcff" * 1000, "\\boxed{" * 10_000, "<answer>\n" * 1000, "}\\boxed{"],
)
def test_bad_responses_score_zero(response):
    rewards = compute_reward(response, {"verifier": "mathverify", "ground_truth": "\\boxed{1}"})
    assert rewards["accuracy_reward"] == 0.0


@pytest.mark.parametrize("seed", range(2))
def test_prediction_key_is_what_parse_extracts(seed):
    # the key's string is the string form math-verify's own parse ends its result with
    keyed = 0
    for _, response in _pairs(seed, 150):
        key = prediction_key(response.lower())
        parsed = parse_prediction(response)
        if key is None:
            continue
        keyed += 1
        if key == ("", False):
            assert parsed == []
        else:
            assert parsed[-1] == key[0]
    assert keyed > 100  # the usual response is keyed (no full parse needed for a repeated answer)
