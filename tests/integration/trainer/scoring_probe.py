"""Scoring actors in a process of its own joined to a Ray head, as the trainer starts them in a job.

``python -m tests.integration.trainer.scoring_probe CONFIG_JSON OUT`` scores REQUESTS on the
config's scoring actors, kills one actor's process (Ray restarts it), scores them again, and writes
both results (and the actors' process ids before and after) to OUT as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from trainer.config import TrainConfig
from trainer.engine.distributed.scoring_actors import start_scoring_actors
from trainer.rewards import RewardRequest

DETECTION = {
    "verifier": "detection",
    "ground_truth": [{"bbox_2d": [10, 10, 200, 200], "label": "cat"}],
}
REQUESTS = [
    RewardRequest("<think>2+2</think> \\boxed{4}", {"verifier": "mathverify", "ground_truth": "\\boxed{4}"}),
    RewardRequest("\\boxed{5}", {"verifier": "mathverify", "ground_truth": "\\boxed{4}"}),
    RewardRequest('[{"bbox_2d": [10, 10, 200, 200], "label": "cat"}]', DETECTION, step=1, total_steps=10),
    RewardRequest('[{"bbox_2d": [0, 0, 50, 50], "label": "cat"}]', DETECTION, step=1, total_steps=10),
    RewardRequest("no answer", {"verifier": "mathverify", "ground_truth": "\\boxed{7}"}),
]


def summary(results) -> list[dict]:
    return [{"rewards": dict(r.rewards), "error": r.error} for r in results]


def main(config_json: str, out: str) -> None:
    import ray

    config = TrainConfig.model_validate(json.loads(config_json), strict=False)
    scorer = start_scoring_actors(config)
    try:
        first = summary(scorer.score(REQUESTS))
        pids = [ray.get(actor.pid.remote()) for actor in scorer.actors]
        os.kill(pids[0], signal.SIGKILL)
        second = summary(scorer.score(REQUESTS))
        after = [ray.get(actor.pid.remote()) for actor in scorer.actors]
    finally:
        scorer.close()
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"first": first, "second": second, "pids": pids, "after": after}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
