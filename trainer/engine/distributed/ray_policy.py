"""The policy on data-parallel Ray workers, coordinated by the driver (the Ray job's entrypoint).

:func:`start_ray_policy` joins the cluster, refuses a request the cluster cannot hold before
placing anything, reserves a placement group (one bundle per worker), starts one
:class:`~trainer.engine.distributed.worker.PolicyWorker` actor per bundle and forms their
process group. :class:`RayPolicy` is then both the run's :class:`~trainer.engine.policy.Policy`
and its rollout backend: each call goes to every worker at once and waits for all of them,
never longer than ``engine.timeout_s``; a worker that dies or stops answering fails the call
with :class:`~trainer.engine.errors.EngineFailure`, which ends the run (its last checkpoint
stays intact and resumable).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.algo import UpdateConfig, assign_owners, merge_totals
from trainer.config import TrainConfig
from trainer.engine.distributed.split import split_evenly, worker_seed
from trainer.engine.distributed.transfer import file_chunks, write_chunk
from trainer.engine.errors import EngineFailure, PreflightError, Problem
from trainer.rollout import Rollout, RolloutPrompt

# Set in every worker before it imports anything: no hub access, no tokenizer threads.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def needed_resources(config: TrainConfig) -> dict[str, float]:
    """CPUs and GPUs the workers and the scoring actors reserve together.

    >>> from trainer.config import load_config
    >>> needed_resources(load_config("tiny-cpu-demo", ["engine.kind=ray", "engine.workers=2"]))
    {'CPU': 2.0, 'GPU': 0.0}
    >>> needed_resources(load_config("tiny-cpu-demo", ["engine.kind=ray", "reward.actors=2",
    ...                                                "reward.cpus_per_actor=0.5"]))
    {'CPU': 2.0, 'GPU': 0.0}
    """
    engine, reward = config.engine, config.reward
    cpus = engine.workers * engine.cpus_per_worker + reward.actors * reward.cpus_per_actor
    return {"CPU": cpus, "GPU": engine.workers * engine.gpus_per_worker}


def resource_problems(config: TrainConfig, cluster: Mapping[str, float]) -> list[Problem]:
    """Why the cluster (``ray.cluster_resources()``) cannot hold the workers; empty when it can."""
    engine = config.engine
    problems = []
    for resource, need in needed_resources(config).items():
        have = float(cluster.get(resource, 0.0))
        if need > have:
            per = engine.cpus_per_worker if resource == "CPU" else engine.gpus_per_worker
            field = "engine.cpus_per_worker" if resource == "CPU" else "engine.gpus_per_worker"
            parts = f"{engine.workers} workers × {per:g} {resource}"
            if resource == "CPU" and config.reward.actors:
                parts += f" + {config.reward.actors} scoring actors × {config.reward.cpus_per_actor:g} CPU"
                field += " or reward.actors"
            problems.append(
                Problem(
                    field.split(" or ")[0],
                    f"{parts} = {need:g} {resource}, but the Ray cluster has {have:g}; lower "
                    f"engine.workers or {field}, or add nodes",
                )
            )
    return problems


def connect(config: TrainConfig) -> None:
    """Join ``engine.address``, else ``RAY_ADDRESS`` / the job's cluster, else start a local one."""
    import ray

    if ray.is_initialized():
        return
    address = config.engine.address or os.environ.get("RAY_ADDRESS")
    if address:
        # Inside a Ray job the job's runtime env applies; a driver's own would conflict with it.
        ray.init(address=address, log_to_driver=True)
    else:
        need = needed_resources(config)
        ray.init(num_cpus=max(1, int(need["CPU"] + 0.999)), include_dashboard=False)


class RayPolicy:
    """The policy on ``engine.workers`` Ray actors; see the module docstring."""

    def __init__(self, config: TrainConfig, actors: Sequence[Any], placement: Any) -> None:
        self.config = config
        self.actors = list(actors)
        self.placement = placement
        self.timeout_s = config.engine.timeout_s
        self.driver_node = ""
        self.nodes: list[str] = []  # each worker's Ray node (its bundle's)

    @property
    def world(self) -> int:
        return len(self.actors)

    def _gather(self, refs: Sequence[Any], what: str) -> list[Any]:
        """The results of one call on every worker, or :class:`EngineFailure` saying which failed."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        try:
            return list(ray.get(list(refs), timeout=self.timeout_s))
        except RayActorError as exc:
            raise EngineFailure(f"a training worker died during {what}: {_first_line(exc)}") from None
        except GetTimeoutError:
            raise EngineFailure(
                f"the training workers did not finish {what} within engine.timeout_s = {self.timeout_s:g} s"
            ) from None
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise EngineFailure(f"a training worker failed during {what}: {_first_line(cause)}") from None

    def generate(
        self,
        prompts: Sequence[RolloutPrompt],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> list[Rollout]:
        """Each worker samples its contiguous share of ``prompts``; prompt-major order is kept."""
        if len(prompts) == 0:
            raise ValueError("prompts is empty: nothing to generate")
        bounds = split_evenly(len(prompts), self.world)
        refs = [
            actor.generate.remote(
                list(prompts[start:end]),
                n=n,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                greedy=greedy,
                seed=worker_seed(seed, rank),
            )
            for rank, (actor, (start, end)) in enumerate(zip(self.actors, bounds, strict=True))
        ]
        parts = self._gather(refs, "rollout")
        rollouts: list[Rollout] = []
        for (start, _), part in zip(bounds, parts, strict=True):
            rollouts += [dataclasses.replace(r, prompt_index=r.prompt_index + start) for r in part]
        return rollouts

    def update(
        self, rollouts: Sequence[Rollout], advantages: torch.Tensor, config: UpdateConfig
    ) -> dict[str, float]:
        """Each worker updates on its share; gradients are summed over them; metrics reduced as sums."""
        if len(rollouts) < self.world:
            raise EngineFailure(
                f"{len(rollouts)} responses cannot be shared by {self.world} workers this step "
                "(dynamic sampling dropped the rest); raise rollout.prompts_per_step"
            )
        lengths = [r.response_length for r in rollouts]
        owner = assign_owners(lengths, self.world)
        refs = []
        for rank, actor in enumerate(self.actors):
            mine = [i for i, o in enumerate(owner) if o == rank]
            refs.append(
                actor.update.remote(
                    [rollouts[i] for i in mine], advantages[mine].clone(), lengths, owner, config
                )
            )
        return merge_totals(self._gather(refs, "the update")).metrics()

    def advance_schedule(self) -> None:
        self._gather([actor.advance_schedule.remote() for actor in self.actors], "the LR schedule")

    def signature(self) -> dict[str, Any]:
        return self._gather([self.actors[0].signature.remote()], "the model signature")[0]

    def full_state(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on the CPU."""
        return self._gather([actor.full_state.remote() for actor in self.actors], "gathering weights")[0]

    def _elsewhere(self, rank: int) -> bool:
        """Whether worker ``rank`` runs on another node than the driver (no shared folder assumed)."""
        return bool(self.nodes) and self.nodes[rank] != self.driver_node

    def save(self, directory: Path) -> None:
        """Rank 0 writes ``policy/`` and the optimizer; from another node it sends them in chunks."""
        if not self._elsewhere(0):
            refs = [actor.save.remote(str(directory)) for actor in self.actors]
            self._gather(refs, "saving a checkpoint")
            return
        others = [actor.save.remote(str(directory)) for actor in self.actors[1:]]
        stream = self.actors[0].save_chunks.options(num_returns="streaming").remote()
        try:
            for ref in stream:
                write_chunk(Path(directory), self._gather([ref], "sending the checkpoint")[0])
        except EngineFailure:
            raise
        except Exception as exc:  # the generator itself raises when its worker died
            what = _first_line(exc)
            raise EngineFailure(f"a training worker failed sending the checkpoint: {what}") from None
        self._gather(others, "saving a checkpoint")

    def load(self, directory: Path) -> None:
        """Every worker loads the checkpoint; those on other nodes get its files as chunks."""
        import ray

        away = [rank for rank in range(self.world) if self._elsewhere(rank)]
        chunks = [ray.put(chunk) for chunk in file_chunks(Path(directory))] if away else []
        refs = [
            actor.load_chunks.remote(chunks) if rank in away else actor.load.remote(str(directory))
            for rank, actor in enumerate(self.actors)
        ]
        self._gather(refs, "loading a checkpoint")

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._gather([actor.load_state.remote(dict(state)) for actor in self.actors], "loading a checkpoint")

    def close(self) -> None:
        """Stop the workers and free their placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # an actor already gone
                pass
        self.actors = []
        if self.placement is not None:
            try:
                remove_placement_group(self.placement)
            except Exception:  # the cluster itself is gone
                pass
            self.placement = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _bundle_nodes(placement: Any, workers: int, driver: str) -> list[str]:
    """The Ray node of each worker's bundle (the driver's where Ray does not say)."""
    from ray.util.placement_group import placement_group_table

    nodes = placement_group_table(placement).get("bundles_to_node_id", {})
    return [str(nodes.get(rank, driver)) for rank in range(workers)]


def _model_chunks(config: TrainConfig, away: Sequence[int]) -> dict[int, list[Any]]:
    """The model directory as chunks for each worker in ``away`` (on another node than the driver),
    when the directory is in the driver's staging folder (a warm-started model); else nothing."""
    import ray

    from trainer.checkpoint.remote import is_staged

    if not away or config.model.is_tiny or not is_staged(config.model.path):
        return {}
    chunks = [ray.put(chunk) for chunk in file_chunks(Path(config.model.path))]
    print(
        f"train: {config.model.path} is on the driver's node only: sent to {len(away)} worker(s) "
        "through Ray's object store",
        flush=True,
    )
    return {rank: chunks for rank in away}


def start_ray_policy(config: TrainConfig) -> RayPolicy:
    """Place and start the workers and form their process group; see the module docstring.

    Raises :class:`PreflightError` when the cluster lacks the resources, or the workers cannot
    be placed within ``engine.timeout_s``.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from trainer.engine.distributed.worker import PolicyWorker

    engine = config.engine
    connect(config)
    problems = resource_problems(config, ray.cluster_resources())
    if problems:
        raise PreflightError(problems, "cannot place the training workers")
    bundle = {"CPU": engine.cpus_per_worker}
    if engine.gpus_per_worker:
        bundle["GPU"] = engine.gpus_per_worker
    placement = placement_group([dict(bundle) for _ in range(engine.workers)], strategy="PACK")
    try:
        ray.get(placement.ready(), timeout=engine.timeout_s)
    except Exception:
        remove_placement_group(placement)
        free = ray.available_resources()
        held = ", ".join(
            f"{free.get(name, 0.0):g} of the {need:g} {name} needed free"
            for name, need in needed_resources(config).items()
            if need
        )
        raise PreflightError(
            [
                Problem(
                    "engine.workers",
                    f"{engine.workers} workers could not be placed within {engine.timeout_s:g} s: {held} "
                    "(other jobs, or this job's own entrypoint, hold the rest); lower "
                    "engine.cpus_per_worker or engine.workers",
                )
            ],
            "cannot place the training workers",
        ) from None
    remote = ray.remote(PolicyWorker)
    payload = config.model_dump(mode="json")
    driver = str(ray.get_runtime_context().get_node_id())
    nodes = _bundle_nodes(placement, engine.workers, driver)
    shipped = _model_chunks(config, [rank for rank, node in enumerate(nodes) if node != driver])
    actors = [
        remote.options(
            runtime_env={"env_vars": WORKER_ENV},
            num_cpus=engine.cpus_per_worker,
            num_gpus=engine.gpus_per_worker,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement, placement_group_bundle_index=rank
            ),
        ).remote(payload, rank, engine.workers, shipped.get(rank))
        for rank in range(engine.workers)
    ]
    policy = RayPolicy(config, actors, placement)
    policy.nodes, policy.driver_node = nodes, driver
    try:
        address, port = policy._gather([actors[0].rendezvous.remote()], "starting the workers")[0]
        policy._gather([actor.join.remote(address, port) for actor in actors], "forming the process group")
        away = sum(node != driver for node in nodes)
        if away:
            print(
                f"train: {away} of {engine.workers} workers on other nodes than the driver: "
                "checkpoints travel through Ray's object store",
                flush=True,
            )
    except BaseException:
        policy.close()
        raise
    return policy
