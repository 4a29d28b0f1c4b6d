"""The source mixture: weights, per-source epochs, and exact resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from trainer.data.mixture import MixedRows, MixtureSampler


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_are_respected(seed):
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    sampler = MixtureSampler({"a": 50, "b": 7, "c": 1000}, weights, seed=seed)
    draws = 20_000
    counts = Counter(name for name, _ in sampler.draw(draws))
    chi_square = sum((counts[n] - draws * w) ** 2 / (draws * w) for n, w in weights.items())
    # 2 degrees of freedom: P(chi2 > 13.8) = 0.001
    assert chi_square < 13.8, counts


def test_weights_need_not_sum_to_one():
    sampler = MixtureSampler({"a": 3, "b": 3}, {"a": 3.0, "b": 1.0})
    assert sampler.probabilities == {"a": 0.75, "b": 0.25}


def test_default_weights_are_equal():
    assert MixtureSampler({"a": 1, "b": 2, "c": 3}).probabilities == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )


def test_zero_weight_is_never_drawn():
    sampler = MixtureSampler({"a": 5, "b": 5}, {"a": 1.0, "b": 0.0}, seed=4)
    assert {name for name, _ in sampler.draw(500)} == {"a"}


def test_each_epoch_is_a_fresh_permutation():
    sampler = MixtureSampler({"a": 10}, seed=7)
    epochs = [[index for _, index in sampler.draw(10)] for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
    assert sampler.epoch("a") == 3


def test_same_seed_same_draws_other_seed_other_draws():
    sizes = {"a": 20, "b": 30}
    first = MixtureSampler(sizes, seed=11).draw(100)
    assert MixtureSampler(sizes, seed=11).draw(100) == first
    assert MixtureSampler(sizes, seed=12).draw(100) != first


@pytest.mark.parametrize("stop", [0, 1, 37, 250])
def test_state_restore_continues_identically(stop):
    sizes, weights = {"a": 13, "b": 4, "c": 29}, {"a": 2.0, "b": 1.0, "c": 1.0}
    reference = MixtureSampler(sizes, weights, seed=5)
    expected = reference.draw(stop + 300)[stop:]
    interrupted = MixtureSampler(sizes, weights, seed=5)
    interrupted.draw(stop)
    saved = json.loads(json.dumps(interrupted.state_dict()))  # as a checkpoint stores it
    resumed = MixtureSampler(sizes, weights, seed=5)
    resumed.load_state_dict(saved)
    assert resumed.draws == stop
    assert resumed.draw(300) == expected


def test_state_is_small():
    sampler = MixtureSampler({"a": 100_000, "b": 50_000}, seed=1)
    sampler.draw(1000)
    assert len(json.dumps(sampler.state_dict())) < 300


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 6}, "mixture state has seed 6; this sampler has 5"),
        (
            {"sizes": {"a": 3, "b": 5}},
            "mixture state has sizes {'a': 3, 'b': 5}; this sampler has {'a': 3, 'b': 4}",
        ),
        (
            {"weights": {"a": 1.0, "b": 2.0}},
            "mixture state has weights {'a': 1.0, 'b': 2.0}; this sampler has {'a': 1.0, 'b': 1.0}",
        ),
        ({"version": 99}, "mixture state version 99 is not 1"),
        ({"position": {"a": 3, "b": 0}}, "mixture state position 3 of 'a' is out of range"),
    ],
)
def test_state_from_another_mixture_is_refused(change, message):
    sampler = MixtureSampler({"a": 3, "b": 4}, seed=5)
    state = {**sampler.state_dict(), **change}
    with pytest.raises(ValueError) as info:
        MixtureSampler({"a": 3, "b": 4}, seed=5).load_state_dict(state)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("sizes", "weights", "message"),
    [
        ({}, None, "a mixture needs at least one source"),
        ({"a": 1}, {"b": 1.0}, "weights name unknown source(s) b; known: a"),
        ({"a": 1}, {"a": -1.0}, "weight of source 'a' must be a finite number >= 0, got -1.0"),
        ({"a": 1}, {"a": float("nan")}, "weight of source 'a' must be a finite number >= 0, got nan"),
        ({"a": 1}, {"a": float("inf")}, "weight of source 'a' must be a finite number >= 0, got inf"),
        ({"a": 0}, {"a": 1.0}, "source 'a' has weight 1.0 but no rows"),
        ({"a": 1, "b": 1}, {"a": 0.0, "b": 0.0}, "at least one source needs a positive weight"),
    ],
)
def test_invalid_mixtures(sizes, weights, message):
    with pytest.raises(ValueError) as info:
        MixtureSampler(sizes, weights)
    assert str(info.value) == message


def test_empty_source_with_zero_weight_is_allowed():
    sampler = MixtureSampler({"a": 2, "empty": 0}, {"a": 1.0, "empty": 0.0})
    assert {name for name, _ in sampler.draw(10)} == {"a"}


def test_mixed_rows_resume():
    rows = {"x": [f"x{i}" for i in range(5)], "y": [f"y{i}" for i in range(3)]}
    stream = MixedRows(rows, {"x": 1.0, "y": 1.0}, seed=2)
    head = [next(stream) for _ in range(7)]
    state = stream.state_dict()
    tail = [next(stream) for _ in range(10)]
    resumed = MixedRows(rows, {"x": 1.0, "y": 1.0}, seed=2)
    resumed.load_state_dict(state)
    assert [next(resumed) for _ in range(10)] == tail
    assert set(head) <= set(rows["x"]) | set(rows["y"])


def test_next_of_walks_one_source_without_moving_the_mixture():
    sizes = {"a": 4, "b": 3}
    plain = MixtureSampler(sizes, seed=5)
    reference = plain.draw(20)
    sampler = MixtureSampler(sizes, seed=5)
    extra = [sampler.next_of("b") for _ in range(3)]
    assert sorted(extra) == [0, 1, 2]  # one epoch of "b"
    assert sampler.draws == 0 and sampler.epoch("b") == 1
    later = sampler.draw(20)
    assert [name for name, _ in later] == [name for name, _ in reference]  # same sources drawn
    assert [i for name, i in later if name == "a"] == [i for name, i in reference if name == "a"]
    b_later = [i for name, i in later if name == "b"]
    assert sorted(b_later[:3]) == [0, 1, 2]  # "b" goes on with its second epoch


def test_next_of_is_resumed_exactly():
    sampler = MixtureSampler({"a": 4, "b": 3}, seed=2)
    sampler.draw(3)
    sampler.next_of("a")
    resumed = MixtureSampler({"a": 4, "b": 3}, seed=2)
    resumed.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert [resumed.next_of("a") for _ in range(5)] + resumed.draw(10) == [
        sampler.next_of("a") for _ in range(5)
    ] + sampler.draw(10)


def test_next_of_an_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown source 'c'; known: a, b"):
        MixtureSampler({"a": 1, "b": 1}).next_of("c")
