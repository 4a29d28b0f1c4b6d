"""Scoring on Ray actors: a step's reward requests shared among ``reward.actors`` actors, each
scoring its share in a :class:`~trainer.rewards.RewardPool` of ``reward.workers`` processes.

The driver's own pool scores on the driver's node only; actors spread scoring over the cluster,
beside the training workers. A sample that fails or runs past ``reward.timeout_s`` scores 0 with
an error, as in the pool; an actor that dies is restarted by Ray and its share sent again once,
and a second death (or no answer within ``engine.timeout_s``) fails the step with
:class:`~trainer.engine.errors.EngineFailure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.config import TrainConfig
from trainer.engine.distributed.split import split_evenly
from trainer.engine.errors import EngineFailure
from trainer.rewards import RewardPool, RewardRequest, RewardResult


class ScoringActor:
    """One actor's reward pool (a Ray actor class; plain Python when called directly in tests)."""

    def __init__(self, workers: int | None, timeout_s: float) -> None:
        self.pool = RewardPool(workers=workers, timeout_s=timeout_s)

    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]:
        return self.pool.score(items)

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        self.pool.close()


class RayScorer:
    """The scorer of a run whose ``reward.actors`` > 0 (see the module docstring)."""

    def __init__(self, actors: Sequence[Any], timeout_s: float) -> None:
        self.actors = list(actors)
        self.timeout_s = timeout_s

    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]:
        """Results of ``items`` in order; each actor scores a contiguous share."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        items = list(items)
        if not items:
            return []
        bounds = split_evenly(len(items), len(self.actors))
        shares = [(a, s, e) for a, (s, e) in zip(self.actors, bounds, strict=True) if e > s]
        refs = [actor.score.remote(items[start:end]) for actor, start, end in shares]
        try:
            parts = ray.get(refs, timeout=self.timeout_s)
        except RayActorError as exc:
            raise EngineFailure(
                f"a scoring actor died twice while scoring a step: {_first_line(exc)}"
            ) from None
        except GetTimeoutError:
            raise EngineFailure(
                f"the scoring actors did not score {len(items)} responses within engine.timeout_s = "
                f"{self.timeout_s:g} s"
            ) from None
        return [result for part in parts for result in part]

    def close(self) -> None:
        import ray

        actors, self.actors = self.actors, []
        for actor in actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to close
                pass
            ray.kill(actor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def start_scoring_actors(config: TrainConfig) -> RayScorer:
    """Start ``reward.actors`` scoring actors on the cluster the run's driver joined."""
    import ray

    from trainer.engine.distributed.ray_policy import WORKER_ENV, connect

    connect(config)
    reward = config.reward
    remote = ray.remote(ScoringActor).options(
        num_cpus=reward.cpus_per_actor,
        runtime_env={"env_vars": WORKER_ENV},
        max_restarts=1,
        max_task_retries=1,
    )
    actors = [remote.remote(reward.workers, reward.timeout_s) for _ in range(reward.actors)]
    return RayScorer(actors, config.engine.timeout_s)
