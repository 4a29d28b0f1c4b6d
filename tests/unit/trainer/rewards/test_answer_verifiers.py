"""The choice, exact and number verifiers."""

from __future__ import annotations

import pytest

from trainer.rewards import RewardModelError, compute_reward, validate_reward_model
from trainer.rewards.choice import choice_letter
from trainer.rewards.number import read_number


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b)", "B"),
        ("[c]", "C"),
        ("answer: b", "B"),
        ("The answer is (C).", "C"),
        ("Answer - D", "D"),
        ("I think A, but the answer is option B", "B"),
        ("B. 42 apples", "B"),
        ("(A) a red car", "A"),
        ("\\boxed{D}", "D"),
        ("<think>\nA or B?\n</think>\n<answer>\nB\n</answer>", "B"),
        ("so it must be (D) after all", "D"),
        ("A dog is on the mat", None),
        ("", None),
        ("42", None),
    ],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


@pytest.mark.parametrize(
    ("response", "gold", "accuracy"),
    [
        ("<answer>\n(b) a cat\n</answer>", "B", 1.0),
        ("answer: b", "\\boxed{B}", 1.0),
        ("The answer is C", "(B)", 0.0),
        ("nothing", "B", 0.0),
    ],
)
def test_choice_verifier(response, gold, accuracy):
    rewards = compute_reward(response, {"verifier": "choice", "ground_truth": gold})
    assert rewards["accuracy_reward"] == accuracy


@pytest.mark.parametrize(
    ("response", "gold", "accuracy"),
    [
        ("\\boxed{STOP}", "stop", 1.0),
        ("<answer>\n  Hello,   World! \n</answer>", "hello, world", 1.0),
        ("“Ｃａｆé”", '"café"', 1.0),  # NFKC + case folding + quotes
        ("hello world", "hello, world", 0.0),
        ("", "x", 0.0),
    ],
)
def test_exact_verifier(response, gold, accuracy):
    assert (
        compute_reward(response, {"verifier": "exact", "ground_truth": gold})["accuracy_reward"] == accuracy
    )


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("\\boxed{12}", 12.0),
        ("There are 1,234 cars.", 1234.0),
        ("-0.5", -0.5),
        ("3 dogs and 4 cats, so 7", 7.0),
        ("1e3", 1000.0),
        ("none", None),
        ("1e999", None),
    ],
)
def test_read_number(text, number):
    assert read_number(text) == number


@pytest.mark.parametrize(
    ("response", "parm", "accuracy"),
    [
        ("\\boxed{7}", None, 1.0),
        ("\\boxed{7.0}", None, 1.0),
        ("\\boxed{8}", None, 0.0),
        ("\\boxed{8}", {"abs_tol": 1}, 1.0),  # |8 − 7| ≤ 1
        ("\\boxed{7.5}", {"rel_tol": 0.1}, 1.0),  # |7.5 − 7| = 0.5 ≤ 0.1·7 = 0.7
        ("\\boxed{8}", {"rel_tol": 0.1}, 0.0),  # 1 > 0.7
        ("seven", None, 0.0),
    ],
)
def test_number_verifier(response, parm, accuracy):
    model = {"verifier": "number", "ground_truth": "\\boxed{7}", "verifier_parm": parm}
    assert compute_reward(response, model)["accuracy_reward"] == accuracy


@pytest.mark.parametrize(
    ("model", "field", "message"),
    [
        (
            {"verifier": "choice", "ground_truth": "the second one"},
            "reward_model.ground_truth",
            "ground_truth of a choice question must be one option letter such as 'B' or '\\\\boxed{B}', "
            "got 'the second one'",
        ),
        (
            {"verifier": "exact", "ground_truth": " ... "},
            "reward_model.ground_truth",
            "ground_truth is empty after normalisation",
        ),
        (
            {"verifier": "number", "ground_truth": "many"},
            "reward_model.ground_truth",
            "ground_truth must hold a number such as '\\\\boxed{3}', got 'many'",
        ),
        (
            {"verifier": "number", "ground_truth": "3", "verifier_parm": {"abs_tol": -1}},
            "reward_model.verifier_parm.abs_tol",
            "abs_tol must be a number >= 0, got -1",
        ),
    ],
)
def test_invalid(model, field, message):
    with pytest.raises(RewardModelError) as info:
        validate_reward_model(model)
    assert (info.value.field, str(info.value)) == (field, message)
