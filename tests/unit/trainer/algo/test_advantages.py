import doctest
import importlib
import re

import pytest
import torch

from trainer.algo import group_advantages, zero_std_groups


@pytest.mark.parametrize(
    ("rewards", "group_size", "expected"),
    [
        # mean 0.5, unbiased std sqrt(0.5) = 0.70711: ±0.5 / (0.70711 + 1e-6)
        ([1.0, 0.0], 2, [0.5 / (0.5**0.5 + 1e-6), -0.5 / (0.5**0.5 + 1e-6)]),
        # mean 0.25, unbiased var (0.5625 + 3 * 0.0625) / 3 = 0.25, std 0.5:
        # 0.75 / 0.5 = 1.5, -0.25 / 0.5 = -0.5
        ([1.0, 0.0, 0.0, 0.0], 4, [1.5, -0.5, -0.5, -0.5]),
        # constant groups carry no signal: exactly 0 (0.1 + 0.1 + 0.1 is not 0.3 in floating point)
        ([0.1, 0.1, 0.1, 0.7, 0.7, 0.7], 3, [0.0] * 6),
        # groups of one: 0
        ([3.0, -2.0, 0.5], 1, [0.0, 0.0, 0.0]),
        # mean 2, unbiased std 1: (1 - 2) / 1, 0, (3 - 2) / 1
        ([1.0, 2.0, 3.0], 3, [-1.0, 0.0, 1.0]),
    ],
)
def test_hand_computed(rewards, group_size, expected):
    result = group_advantages(torch.tensor(rewards), group_size=group_size)
    assert result.dtype == torch.float32
    assert result.tolist() == pytest.approx(expected, abs=1e-5)


def test_constant_group_is_exactly_zero():
    assert group_advantages(torch.tensor([0.1, 0.1, 0.1]), group_size=3).tolist() == [0.0, 0.0, 0.0]


def test_biased_std():
    # mean 0.25, biased var 0.75 / 4 = 0.1875, std 0.43301:
    # 0.75 / 0.43301 = 1.73205, -0.25 / 0.43301 = -0.57735
    result = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4, unbiased=False)
    assert result.tolist() == pytest.approx([1.73205, -0.57735, -0.57735, -0.57735], abs=1e-4)


def test_group_ids_any_labels_any_order():
    rewards = torch.tensor([1.0, 5.0, 0.0, 5.0, 2.0])
    # groups: label 7 -> {1.0, 0.0}, label -3 -> {5.0, 5.0}, label 42 -> {2.0} alone
    result = group_advantages(rewards, group_ids=[7, -3, 7, -3, 42])
    a = 0.5 / (0.5**0.5 + 1e-6)
    assert result.tolist() == pytest.approx([a, 0.0, -a, 0.0, 0.0], abs=1e-6)


def test_group_size_equals_consecutive_group_ids():
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(0))
    by_size = group_advantages(rewards, group_size=4)
    by_ids = group_advantages(rewards, group_ids=torch.arange(12) // 4)
    assert torch.equal(by_size, by_ids)


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_matches_a_plain_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    size = 40
    rewards = torch.randint(0, 4, (size,), generator=generator).float() / 3  # ties and constant groups happen
    group_ids = torch.randint(0, 9, (size,), generator=generator)
    expected = torch.zeros(size)
    for group in group_ids.unique():
        members = (group_ids == group).nonzero().flatten()
        values = rewards[members].double()
        if members.numel() > 1 and values.max() > values.min():
            expected[members] = ((values - values.mean()) / (values.std() + 1e-6)).float()
    torch.testing.assert_close(group_advantages(rewards, group_ids=group_ids), expected, atol=1e-6, rtol=0)


def test_does_not_track_gradients_or_modify_input():
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    result = group_advantages(rewards, group_size=2)
    assert not result.requires_grad
    assert rewards.tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("rewards", "kwargs", "error", "message"),
    [
        (torch.tensor([]), {"group_size": 1}, ValueError, "rewards is empty"),
        (torch.ones(2, 2), {"group_size": 2}, ValueError, "rewards must be 1-D (N,), got shape (2, 2)"),
        ([1.0, 0.0], {"group_size": 2}, TypeError, "rewards must be a torch.Tensor, got list"),
        (
            torch.tensor([1.0, float("nan"), 0.0, float("inf")]),
            {"group_size": 2},
            ValueError,
            "rewards must be finite; NaN or Inf at index [1, 3]",
        ),
        (torch.ones(4), {}, ValueError, "pass exactly one of group_ids and group_size"),
        (
            torch.ones(4),
            {"group_size": 2, "group_ids": [0, 0, 1, 1]},
            ValueError,
            "pass exactly one of group_ids and group_size",
        ),
        (torch.ones(6), {"group_size": 4}, ValueError, "6 rewards cannot be split into groups of 4"),
        (torch.ones(4), {"group_size": 0}, ValueError, "group_size must be a positive int, got 0"),
        (torch.ones(4), {"group_size": True}, ValueError, "group_size must be a positive int, got True"),
        (torch.ones(4), {"group_size": 2.0}, ValueError, "group_size must be a positive int, got 2.0"),
        (torch.ones(4), {"group_ids": [0, 0, 1]}, ValueError, "group_ids must have shape (4,), got (3,)"),
        (
            torch.ones(2),
            {"group_ids": [0.0, 1.0]},
            ValueError,
            "group_ids must be integers, got torch.float32",
        ),
    ],
)
def test_rejects_bad_input(rewards, kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        group_advantages(rewards, **kwargs)


@pytest.mark.parametrize(
    ("rewards", "group_ids", "expected"),
    [
        # group 0 mixed, group 1 constant, group 2 a single response (constant)
        ([1.0, 0.0, 0.5, 0.5, 1.0], [0, 0, 1, 1, 2], [1, 2]),
        # every group constant, labels in order of first occurrence
        ([0.0, 0.0, 1.0, 1.0], [7, 7, 3, 3], [7, 3]),
        # interleaved groups: 5 = (1, 0) mixed, 6 = (0, 0) constant
        ([1.0, 0.0, 0.0, 0.0], [5, 6, 5, 6], [6]),
        # no constant group
        ([1.0, 0.0, 0.2, 0.3], [0, 0, 1, 1], []),
        ([], [], []),
    ],
)
def test_zero_std_groups(rewards, group_ids, expected):
    assert zero_std_groups(rewards, group_ids) == expected


def test_zero_std_groups_agree_with_zero_advantages():
    rewards = [0.1, 0.1, 0.1, 0.7, 0.2, 0.7, 0.3, 0.3]
    ids = [0, 0, 0, 1, 1, 1, 2, 2]
    advantages = group_advantages(torch.tensor(rewards), group_ids=ids).tolist()
    zero = {g for g, a in zip(ids, advantages, strict=True) if a == 0.0}
    assert zero_std_groups(rewards, ids) == [0, 2] and zero == {0, 2}


def test_zero_std_groups_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="2 rewards but 1 group ids"):
        zero_std_groups([1.0, 0.0], [0])


def test_docstring_examples():
    result = doctest.testmod(importlib.import_module("trainer.algo.advantages"))
    assert result.failed == 0 and result.attempted == 2
