import doctest
import importlib
import re

import pytest
import torch

from trainer.algo import warmup_constant_factor, warmup_constant_schedule, warmup_steps


@pytest.mark.parametrize(
    ("total", "ratio", "expected"),
    [
        (100, 0.05, 5),  # 5 % of 100
        (10, 0.05, 1),  # ceil(0.5)
        (30, 0.05, 2),  # ceil(1.5)
        (10, 0.0, 0),
        (7, 1.0, 7),
    ],
)
def test_warmup_steps(total, ratio, expected):
    assert warmup_steps(total, ratio) == expected


@pytest.mark.parametrize(
    ("total", "ratio", "message"),
    [
        (0, 0.05, "total_steps must be a positive int, got 0"),
        (10.0, 0.05, "total_steps must be a positive int, got 10.0"),
        (True, 0.05, "total_steps must be a positive int, got True"),
        (10, -0.1, "warmup_ratio must be in [0, 1], got -0.1"),
        (10, 1.5, "warmup_ratio must be in [0, 1], got 1.5"),
        (10, float("nan"), "warmup_ratio must be in [0, 1], got nan"),
    ],
)
def test_warmup_steps_rejects_bad_input(total, ratio, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        warmup_steps(total, ratio)


def test_factor_without_warmup_is_one():
    assert [warmup_constant_factor(s, 0) for s in range(3)] == [1.0, 1.0, 1.0]


def test_scheduler_per_group_rates():
    # 100 steps, 5 % warm-up: factors 0.2, 0.4, 0.6, 0.8, 1.0, then 1.0 for ever.
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 0.01}])
    scheduler = warmup_constant_schedule(optimizer, total_steps=100)
    seen = []
    for _ in range(8):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    expected = [[0.2, 0.002], [0.4, 0.004], [0.6, 0.006], [0.8, 0.008]] + [[1.0, 0.01]] * 4
    for got, want in zip(seen, expected, strict=True):
        assert got == pytest.approx(want)


def test_doctests():
    result = doctest.testmod(importlib.import_module("trainer.algo.schedule"))
    assert result.attempted > 0 and result.failed == 0
