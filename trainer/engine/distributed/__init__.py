"""Data-parallel training on Ray: workers, their process group, and the driver's view of them.

- :class:`RayPolicy` / :func:`start_ray_policy`: ``engine.kind: ray`` (see ray_policy);
- :class:`PolicyWorker`: one worker's model (whole, or an FSDP2 / ZeRO shard), optimizer and sampler;
- :func:`split_evenly`, :func:`worker_seed`: how prompts and sampling seeds are shared out.

Ray is imported by :func:`start_ray_policy` only, so the single-process path never needs it.
"""

from trainer.engine.distributed.ray_policy import (
    RayPolicy,
    needed_resources,
    resource_problems,
    start_ray_policy,
)
from trainer.engine.distributed.split import split_evenly, worker_seed

__all__ = [
    "RayPolicy",
    "needed_resources",
    "resource_problems",
    "split_evenly",
    "start_ray_policy",
    "worker_seed",
]
