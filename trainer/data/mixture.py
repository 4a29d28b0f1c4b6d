"""An infinite, seeded, resumable sampler that mixes data sources by weight.

Each draw picks a source with probability ``weight / Σ weights`` and returns
the next index of that source's current epoch; each source walks through a
fresh permutation of its rows every epoch (per-source epoch shuffling, as a
``DataLoader`` with ``shuffle=True`` does for one dataset).

Everything random is a pure function of (seed, counters): draw ``k`` uses a
hash of (seed, k), epoch ``e`` of source ``s`` uses a permutation seeded by
(seed, s, e). The state is therefore a few integers (:meth:`state_dict`), and
a sampler restored from it draws exactly what the original would have drawn
next, which is what checkpoint resume needs (DESIGN.md §5).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

STATE_VERSION = 1


def _stable_int(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class MixtureSampler:
    """Draws ``(source, index)`` pairs forever.

    ``sizes`` maps each source to its number of rows; ``weights`` (default:
    equal) to a non-negative weight. A source with weight 0 is never drawn.

    >>> sampler = MixtureSampler({"a": 3, "b": 2}, {"a": 1.0, "b": 0.0}, seed=0)
    >>> sorted(index for _, index in sampler.draw(3))
    [0, 1, 2]
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        weights: Mapping[str, float] | None = None,
        *,
        seed: int = 0,
    ) -> None:
        if not sizes:
            raise ValueError("a mixture needs at least one source")
        weights = dict(weights) if weights is not None else {name: 1.0 for name in sizes}
        unknown = sorted(set(weights) - set(sizes))
        if unknown:
            raise ValueError(
                f"weights name unknown source(s) {', '.join(unknown)}; known: {', '.join(sizes)}"
            )
        self.seed = int(seed)
        self.sources: tuple[str, ...] = tuple(sizes)
        self.sizes = {name: int(sizes[name]) for name in self.sources}
        self.weights = {name: float(weights.get(name, 0.0)) for name in self.sources}
        for name in self.sources:
            weight = self.weights[name]
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of source {name!r} must be a finite number >= 0, got {weight}")
            if weight > 0 and self.sizes[name] < 1:
                raise ValueError(f"source {name!r} has weight {weight} but no rows")
        total = sum(self.weights.values())
        if total <= 0:
            raise ValueError("at least one source needs a positive weight")
        self._drawable = [name for name in self.sources if self.weights[name] > 0]
        cumulative, running = [], 0.0
        for name in self._drawable:
            running += self.weights[name] / total
            cumulative.append(running)
        cumulative[-1] = 1.0  # guard against rounding: u < 1.0 always lands on a source
        self._cumulative = cumulative
        self._draws = 0
        self._epoch = {name: 0 for name in self.sources}
        self._position = {name: 0 for name in self.sources}
        self._permutations: dict[str, tuple[int, np.ndarray]] = {}

    @property
    def probabilities(self) -> dict[str, float]:
        """The probability of drawing each source."""
        total = sum(self.weights.values())
        return {name: self.weights[name] / total for name in self.sources}

    def _permutation(self, name: str) -> np.ndarray:
        epoch = self._epoch[name]
        cached = self._permutations.get(name)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng(_stable_int(self.seed, "epoch", name, epoch))
            cached = (epoch, rng.permutation(self.sizes[name]))
            self._permutations[name] = cached
        return cached[1]

    def _pick_source(self, draw: int) -> str:
        u = _stable_int(self.seed, "draw", draw) / 2.0**64
        return self._drawable[bisect.bisect_right(self._cumulative, u)]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return self

    def _advance(self, name: str) -> int:
        index = int(self._permutation(name)[self._position[name]])
        self._position[name] += 1
        if self._position[name] == self.sizes[name]:
            self._position[name] = 0
            self._epoch[name] += 1
        return index

    def __next__(self) -> tuple[str, int]:
        name = self._pick_source(self._draws)
        index = self._advance(name)
        self._draws += 1
        return name, index

    def next_of(self, name: str) -> int:
        """The next row of source ``name`` in its epoch walk, outside the mixture's draws.

        It moves that source's position as a mixture draw of it would (so its rows are still
        seen once per epoch), but not :attr:`draws`: which source each later draw picks is
        unchanged. Dynamic sampling uses it to replace a prompt with one of the same source.

        >>> sampler = MixtureSampler({"a": 3, "b": 2}, {"a": 1.0, "b": 0.0}, seed=0)
        >>> sorted(sampler.next_of("b") for _ in range(2)), sampler.draws
        ([0, 1], 0)
        """
        if name not in self.sizes:
            raise ValueError(f"unknown source {name!r}; known: {', '.join(self.sources)}")
        if self.sizes[name] < 1:
            raise ValueError(f"source {name!r} has no rows")
        return self._advance(name)

    def draw(self, count: int) -> list[tuple[str, int]]:
        """The next ``count`` draws."""
        return [next(self) for _ in range(count)]

    @property
    def draws(self) -> int:
        """How many draws were made since the start (not since the last restore)."""
        return self._draws

    def epoch(self, name: str) -> int:
        """How many full passes over source ``name`` were completed."""
        return self._epoch[name]

    def state_dict(self) -> dict[str, Any]:
        """A small JSON-serialisable dict from which :meth:`load_state_dict` resumes exactly."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "draws": self._draws,
            "sizes": dict(self.sizes),
            "weights": dict(self.weights),
            "epoch": dict(self._epoch),
            "position": dict(self._position),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; refuses a state saved with other sources, sizes, weights or seed.

        A resumed run must draw what the interrupted one would have drawn; a
        changed mixture cannot promise that, so it raises instead of guessing.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"mixture state version {state.get('version')!r} is not {STATE_VERSION}")
        for key, mine in (("seed", self.seed), ("sizes", self.sizes), ("weights", self.weights)):
            if state.get(key) != mine:
                raise ValueError(f"mixture state has {key} {state.get(key)!r}; this sampler has {mine!r}")
        epoch, position = dict(state["epoch"]), dict(state["position"])
        for name in self.sources:
            if not 0 <= int(position[name]) < max(self.sizes[name], 1):
                raise ValueError(f"mixture state position {position[name]} of {name!r} is out of range")
        self._draws = int(state["draws"])
        self._epoch = {name: int(epoch[name]) for name in self.sources}
        self._position = {name: int(position[name]) for name in self.sources}
        self._permutations = {}


class MixedRows(Generic[T]):
    """Infinite iterator of rows drawn from in-memory sources by a :class:`MixtureSampler`.

    >>> rows = MixedRows({"a": ["a0", "a1"], "b": ["b0"]}, {"a": 1.0, "b": 0.0}, seed=1)
    >>> sorted(next(rows) for _ in range(2))
    ['a0', 'a1']
    """

    def __init__(
        self,
        rows: Mapping[str, Sequence[T]],
        weights: Mapping[str, float] | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.rows = rows
        self.sampler = MixtureSampler({name: len(items) for name, items in rows.items()}, weights, seed=seed)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        name, index = next(self.sampler)
        return self.rows[name][index]

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state (the rows themselves are not saved)."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state saved by :meth:`state_dict`."""
        self.sampler.load_state_dict(state)
