"""Runs the Ray engine in a process of its own joined to a Ray head, as the trainer does in a job.

``python -m tests.integration.trainer.ray_probe ACTION CONFIG_JSON OUT`` (env: the head's, with
RAY_ADDRESS) writes what the action produced to OUT (torch.save of a dict) for the test to check:

- ``update``: one update of a fixed batch; the weights after it and the metrics;
- ``save_then_resume``: update + save with the config, then load with ``workers=1`` and update again;
- ``save``: update + save with the config (the test resumes it elsewhere);
- ``load``: load the checkpoint beside OUT, then update (the loaded weights and the metrics);
- ``start``: start the workers (the error, if any);
- ``kill``: SIGKILL worker 1, then update (the error).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import torch

from tests.unit.trainer.algo.conftest import make_rollouts
from trainer.algo import UpdateConfig
from trainer.config import TrainConfig
from trainer.engine import EngineFailure, PreflightError
from trainer.engine.build import build_processor_for
from trainer.engine.distributed import start_ray_policy

LENGTHS = (3, 7, 1, 5, 4, 6)
ADVANTAGES = torch.tensor([1.0, -0.5, 0.25, -1.0, 0.75, -0.25])
UPDATE = UpdateConfig(mini_batch_size=3, micro_batch_size=2, seed=5)  # two optimizer steps, shuffled


def update_for(config: TrainConfig) -> UpdateConfig:
    """:data:`UPDATE` with the config's padding removal and token budget."""
    algo = config.algo
    return dataclasses.replace(
        UPDATE, remove_padding=algo.remove_padding, micro_batch_tokens=algo.micro_batch_tokens
    )


def main(action: str, config_json: str, out: str) -> dict:
    config = TrainConfig.model_validate(json.loads(config_json), strict=False)
    processor = build_processor_for(config)
    result: dict = {}
    try:
        policy = start_ray_policy(config)
    except PreflightError as exc:
        return {"error": str(exc)}
    try:
        if action == "load":
            policy.load(Path(out).parent)
            result["loaded"] = policy.full_state()
            again = make_rollouts(processor, LENGTHS, seed=1)
            result["next_metrics"] = policy.update(again, ADVANTAGES, UPDATE)
            return result
        if action == "kill":
            import ray

            pid = ray.get(policy.actors[1].__ray_call__.remote(lambda self: os.getpid()))
            os.kill(pid, signal.SIGKILL)
        try:
            rollouts = make_rollouts(processor, LENGTHS)
            result["metrics"] = policy.update(rollouts, ADVANTAGES, update_for(config))
        except EngineFailure as exc:
            return {"error": str(exc)}
        result["weights"] = policy.full_state()
        if action in ("save_then_resume", "save"):
            policy.advance_schedule()
            policy.save(Path(out).parent)
    finally:
        policy.close()
    if action == "save_then_resume":
        one = TrainConfig.model_validate(
            config.model_dump() | {"engine": config.engine.model_dump() | {"workers": 1, "sharding": "none"}}
        )
        again = start_ray_policy(one)
        try:
            again.load(Path(out).parent)
            result["loaded"] = again.full_state()
            result["next_metrics"] = again.update(
                make_rollouts(processor, LENGTHS, seed=1), ADVANTAGES, UPDATE
            )
        finally:
            again.close()
    return result


if __name__ == "__main__":
    action, config_json, out = sys.argv[1:4]
    torch.save(main(action, config_json, out), out)
