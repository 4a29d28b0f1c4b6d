"""What the monitor reads: one :class:`SampleRecord` per scored response, and the metric map type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A metric is addressed by (data source, key); source None = the whole step / global.
MetricKey = tuple[str | None, str]
Metrics = dict[MetricKey, float]

REWARD_SUFFIX = "_reward"


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One response as the monitor sees it.

    ``rewards`` is what ``trainer.rewards.compute_reward`` returned for it (every key ends in
    ``_reward``: ``accuracy_reward``, ``format_reward``, ``final_reward``, the detection
    breakdown...). A response is *correct* when its ``accuracy_reward`` is exactly 1.0, as in
    V-Triune's metrics. ``clipped`` says generation stopped at the maximum response length;
    ``reward_error`` says scoring timed out or failed (its rewards are then 0). In a training
    step, ``group`` identifies the prompt (responses with the same group answered the same prompt,
    a GRPO group) and ``advantage`` is the response's GRPO advantage; both are None elsewhere.
    """

    data_source: str
    verifier: str
    rewards: Mapping[str, float]
    response_text: str
    response_length: int
    clipped: bool
    reward_error: bool = False
    group: int | None = None
    advantage: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data_source, str) or not self.data_source:
            raise ValueError(f"data_source must be a non-empty string, got {self.data_source!r}")
        if isinstance(self.response_length, bool) or not isinstance(self.response_length, int):
            raise ValueError(f"response_length must be an integer, got {self.response_length!r}")
        if self.response_length < 0:
            raise ValueError(f"response_length must be >= 0, got {self.response_length}")
        for key in self.rewards:
            if not isinstance(key, str) or not key.endswith(REWARD_SUFFIX) or key == REWARD_SUFFIX:
                raise ValueError(f"reward keys must end in {REWARD_SUFFIX!r}, got {key!r}")

    @property
    def correct(self) -> bool:
        """``accuracy_reward == 1.0`` (V-Triune's definition of a correct response)."""
        return self.rewards.get("accuracy_reward") == 1.0


def by_source(records: Iterable[SampleRecord]) -> dict[str | None, list[SampleRecord]]:
    """Records grouped per data source, plus every record under ``None`` (the whole step).

    Sources appear in order of first occurrence; ``None`` is absent when there are no records.
    """
    groups: dict[str | None, list[SampleRecord]] = {}
    everything: list[SampleRecord] = []
    for record in records:
        groups.setdefault(record.data_source, []).append(record)
        everything.append(record)
    if everything:
        groups[None] = everything
    return groups
