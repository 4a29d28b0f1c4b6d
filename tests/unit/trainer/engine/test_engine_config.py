"""The engine section, and the pure parts of the data-parallel engine (no Ray, no process group)."""

import pytest
import torch

from trainer.algo import UpdateTotals, assign_owners, merge_totals
from trainer.config import ConfigError, load_config
from trainer.engine.distributed import needed_resources, resource_problems, split_evenly, worker_seed
from trainer.engine.loop import environment_problems


def _problems(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config("tiny-cpu-demo", overrides)
    return [str(p) for p in caught.value.problems]


def test_bad_engine_configs_name_the_field_and_the_fix() -> None:
    assert _problems(["engine.workers=2"]) == [
        "engine.workers: engine.kind local is one process; use engine.kind ray for 2"
    ]
    assert _problems(["engine.offload=true"]) == ["engine.offload: needs engine.sharding fsdp or deepspeed"]
    assert _problems(["engine.kind=ray", "engine.workers=16"]) == [
        "engine.workers: each worker samples at least one prompt a step: 16 workers need "
        "rollout.prompts_per_step >= 16, got 8"
    ]
    assert _problems(["engine.kind=spark"]) == ["engine.kind: must be 'local' or 'ray', got 'spark'"]
    assert _problems(["engine.gpus_per_worker=-1"]) == ["engine.gpus_per_worker: must be >= 0, got -1"]


def test_scoring_actors_need_a_ray_engine_and_no_remote_service() -> None:
    assert _problems(["reward.actors=2"]) == [
        "reward.actors: scoring actors run on a Ray cluster: set engine.kind ray, or reward.actors 0 (got 2)"
    ]
    remote = ["reward.remote.urls=[http://127.0.0.1:8001]", "reward.remote.token_env=T"]
    assert _problems(["engine.kind=ray", "reward.actors=2", *remote]) == [
        "reward.actors: score either on scoring actors or on reward.remote, not both"
    ]
    assert _problems(["engine.kind=ray", "reward.actors=-1"]) == ["reward.actors: must be >= 0, got -1"]


def test_the_cluster_is_asked_for_the_scoring_actors_too() -> None:
    config = load_config(
        "tiny-cpu-demo",
        ["engine.kind=ray", "engine.workers=2", "reward.actors=4", "reward.cpus_per_actor=0.5"],
    )
    assert needed_resources(config) == {"CPU": 4.0, "GPU": 0.0}
    (problem,) = resource_problems(config, {"CPU": 3.0})
    assert problem.where == "engine.cpus_per_worker"
    assert (
        "2 workers × 1 CPU + 4 scoring actors × 0.5 CPU = 4 CPU, but the Ray cluster has 3" in problem.message
    )
    assert "reward.actors" in problem.message


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_offload_without_a_gpu_is_refused_before_anything_starts() -> None:
    config = load_config("tiny-cpu-demo", ["engine.sharding=fsdp", "engine.offload=true"])
    problems = environment_problems(config, {})
    assert [p.where for p in problems] == ["engine.offload"]
    assert "no GPU" in problems[0].message


def test_the_cluster_is_asked_for_what_the_workers_reserve() -> None:
    config = load_config("tiny-cpu-demo", ["engine.kind=ray", "engine.workers=4", "engine.gpus_per_worker=1"])
    assert needed_resources(config) == {"CPU": 4.0, "GPU": 4.0}
    assert resource_problems(config, {"CPU": 64.0, "GPU": 8.0}) == []
    (problem,) = resource_problems(config, {"CPU": 64.0, "GPU": 2.0})
    assert problem.where == "engine.gpus_per_worker"
    assert "4 workers × 1 GPU = 4 GPU, but the Ray cluster has 2" in problem.message


def test_prompts_are_shared_contiguously_and_seeds_differ_per_worker() -> None:
    assert split_evenly(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert split_evenly(0, 2) == [(0, 0), (0, 0)]
    with pytest.raises(ValueError):
        split_evenly(4, 0)
    seeds = [worker_seed(123, rank) for rank in range(4)]
    assert seeds[0] == 123 and len(set(seeds)) == 4


def test_owners_balance_tokens_and_give_every_worker_a_rollout() -> None:
    assert assign_owners([10, 10, 10, 10], 2) == [0, 0, 1, 1]
    assert assign_owners([100, 1, 1, 1], 3) == [0, 1, 2, 2]
    owners = assign_owners([1] * 7 + [50], 4)
    assert sorted(set(owners)) == [0, 1, 2, 3] and owners == sorted(owners)
    with pytest.raises(ValueError, match="cannot be split over 3 workers"):
        assign_owners([5, 5], 3)


def test_metrics_merge_as_sums_not_means_of_means() -> None:
    # worker 0: 10 tokens with loss 1.0; worker 1: 30 tokens with loss 3.0 -> token mean 2.5, not 2.0
    a = UpdateTotals(
        sums={"actor/pg_loss": 10.0}, tokens=10.0, step_sums={"actor/grad_norm": 4.0}, steps=2, lr=0.1
    )
    b = UpdateTotals(
        sums={"actor/pg_loss": 90.0}, tokens=30.0, step_sums={"actor/grad_norm": 4.0}, steps=2, lr=0.1
    )
    metrics = merge_totals([a, b]).metrics()
    assert metrics["actor/pg_loss"] == 2.5
    assert metrics["actor/grad_norm"] == 2.0 and metrics["actor/optimizer_steps"] == 2.0
    assert metrics["actor/lr"] == 0.1
