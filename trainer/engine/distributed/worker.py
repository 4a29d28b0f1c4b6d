"""One data-parallel training worker: its copy (or FSDP / ZeRO shard) of the policy, optimizer and sampler.

A :class:`PolicyWorker` is a plain object; :mod:`trainer.engine.distributed.ray_policy` runs
one per Ray actor and coordinates them. Every worker builds the same initial weights (the
model is seeded by the run seed), joins the process group, and then takes part in every
call the driver makes: generate (its share of the prompts), update (its share of the batch,
gradients summed over the group), schedule, save and load.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from trainer.algo import Shard, UpdateConfig, UpdateTotals, token_logprobs, update_policy_shard
from trainer.algo.logprobs import SHARDED_LOGPROBS
from trainer.algo.update import COMPUTE_DEVICE
from trainer.checkpoint import POLICY_DIR, model_signature, save_torch
from trainer.config import TrainConfig
from trainer.engine.build import (
    backend_options,
    build_model,
    build_optimizer,
    build_processor_for,
    pad_token_id,
    reference_model,
)
from trainer.engine.distributed.collective import TorchCollective, free_port, join_group, leave_group
from trainer.engine.distributed.transfer import Chunk, file_chunks, receive_chunks
from trainer.engine.distributed.zero import (
    full_optimizer_state,
    full_weights,
    generation_ready,
    group_names,
    load_full_weights,
    load_optimizer_state,
    shard_with_deepspeed,
)
from trainer.engine.errors import PreflightError
from trainer.engine.memory import fit_problems
from trainer.engine.policy import OPTIMIZER_FILE, read_optimizer_state, read_policy_weights, step_schedule
from trainer.models.loading import save_model
from trainer.rollout import Rollout, RolloutPrompt, build_backend

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard_with_fsdp(model: nn.Module, *, offload: bool) -> list[nn.Module]:
    """Apply FSDP2 (``fully_shard``) to each transformer block and to the whole model; returns the units.

    FSDP averages the gradients over the workers; the update scales its loss by the number of
    workers (``Collective.loss_scale``), so that they are summed: the loss is already a
    token-mean over the whole batch. (A divide factor of 1 would need PREMUL_SUM, which gloo
    lacks.) ``token_logprobs`` is registered as a forward method of the root, so that
    the root's own parameters (embeddings, LM head) are gathered when the update calls it.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard, register_fsdp_forward_method

    blocks = set(getattr(model, "_no_split_modules", None) or [])
    options: dict[str, Any] = {"offload_policy": CPUOffloadPolicy()} if offload else {}
    units = [module for module in model.modules() if type(module).__name__ in blocks]
    for module in units:
        fully_shard(module, **options)
    fully_shard(model, **options)
    units.append(model)

    def sharded_token_logprobs(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return token_logprobs(self, *args, **kwargs)

    setattr(model, SHARDED_LOGPROBS, types.MethodType(sharded_token_logprobs, model))
    register_fsdp_forward_method(model, SHARDED_LOGPROBS)
    # FSDP initialises its units at the root's first forward; generation calls the inner model
    # first, so the root is initialised now (torch has no public call for it yet).
    model._get_fsdp_state()._lazy_init()  # type: ignore[operator]
    return units


@contextlib.contextmanager
def gathered(units: Sequence[nn.Module]) -> Iterator[None]:
    """Every FSDP unit unsharded for the block (generation), resharded after it.

    Each worker generates a different number of tokens; with the parameters gathered once up
    front, generation runs no collective, so the workers cannot fall out of step.
    """
    if not units:
        yield
        return
    for unit in units:
        unit.unshard()  # type: ignore[operator]
        unit.set_reshard_after_forward(False)  # type: ignore[operator]
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(True)  # type: ignore[operator]
            unit.reshard()  # type: ignore[operator]


def device_for_worker() -> torch.device:
    """The GPU Ray gave this worker (it sees only its own), else the CPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


class PolicyWorker:
    """The policy on one worker of ``world``; see the module docstring."""

    def __init__(
        self, config: Mapping[str, Any], rank: int, world: int, model_chunks: Sequence[Any] | None = None
    ) -> None:
        """``model_chunks``: the model directory as chunks in Ray's object store, for a worker on
        a node that does not have ``model.path`` (it is written to a folder of this node)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.config = TrainConfig.model_validate(config, strict=False)
        self._model_folder: tempfile.TemporaryDirectory | None = None
        if model_chunks:
            self._model_folder = tempfile.TemporaryDirectory(prefix="triune-model-")
            receive_chunks(Path(self._model_folder.name), model_chunks)
            model = self.config.model.model_copy(update={"path": self._model_folder.name})
            self.config = self.config.model_copy(update={"model": model})
        self.rank, self.world = rank, world
        self.device = device_for_worker()
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(self.config.engine.cpus_per_worker)))
        self.processor = build_processor_for(self.config)
        self.pad_token_id = pad_token_id(self.processor)
        self.model: nn.Module | None = None
        self.units: list[nn.Module] = []
        self.zero: ZeroParts | None = None  # with engine.sharding deepspeed

    def rendezvous(self) -> tuple[str, int]:
        """Address and free port of this worker (rank 0's is the group's rendezvous)."""
        host = "127.0.0.1" if self.world == 1 else _node_address()
        return host, free_port(host if host != "0.0.0.0" else "127.0.0.1")

    def join(self, address: str, port: int) -> str:
        """Join the process group, then build the model (sharded if asked) and its optimizer."""
        engine = self.config.engine
        backend = join_group(
            address=address, port=port, rank=self.rank, world=self.world, timeout_s=engine.timeout_s
        )
        problems = fit_problems(self.config, self.device)
        if problems:
            raise PreflightError(problems, f"worker {self.rank}: the run does not fit on its GPU")
        model = build_model(self.config, self.device)
        self.ref_model = reference_model(model, self.config)
        fsdp = engine.sharding == "fsdp"
        self.units = shard_with_fsdp(model, offload=engine.offload) if fsdp else []
        setattr(model, COMPUTE_DEVICE, self.device)  # with offload, the parameters rest in CPU memory
        self.model = model
        self.optimizer, self.scheduler = build_optimizer(model, self.config)  # type: ignore[arg-type]
        group_device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
        self.collective = TorchCollective(group_device, lockstep=fsdp, world=self.world)
        if engine.sharding == "deepspeed":
            names = group_names(model, self.optimizer)
            keys = [key for key in self.optimizer.param_groups[0] if key != "params"]
            signature = model_signature(model)  # ZeRO-3 empties the parameters it shards
            ds_engine, self.optimizer, self.collective = shard_with_deepspeed(
                model, self.optimizer, self.config, world=self.world, device=group_device
            )
            self.zero = ZeroParts(ds_engine, names, keys, signature)
        # Built with the parameters whole, as in generate: vLLM's engine copies the weights.
        with self._generation_ready():
            self.backend = build_backend(
                self.config.rollout.backend,
                model=model,
                processor=self.processor,
                **backend_options(self.config),
            )
        return backend

    def _generation_ready(self) -> contextlib.AbstractContextManager[None]:
        """The policy's parameters whole (FSDP units unsharded, ZeRO-3 gathered) for the block."""
        return generation_ready(self.zero.engine) if self.zero is not None else gathered(self.units)

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
        """``n`` responses for each of this worker's prompts (none: it still joins the gathering)."""
        assert self.model is not None
        with self._generation_ready():
            if not prompts:
                # a backend whose weight push gathers sharded parameters joins the others' gathering
                sync_idle = getattr(self.backend, "sync_idle", None)
                if sync_idle is not None:
                    sync_idle()
                return []
            return self.backend.generate(
                prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy, seed=seed
            )

    def update(
        self,
        rollouts: Sequence[Rollout],
        advantages: torch.Tensor,
        lengths: Sequence[int],
        owner: Sequence[int],
        config: UpdateConfig,
    ) -> UpdateTotals:
        """This worker's part of one update (see :func:`trainer.algo.update_policy_shard`)."""
        shard = Shard(self.rank, self.world, tuple(lengths), tuple(owner), self.collective)
        assert self.model is not None
        return update_policy_shard(
            self.model,
            self.optimizer,
            rollouts,
            advantages,
            pad_token_id=self.pad_token_id,
            config=config,
            ref_model=self.ref_model,
            shard=shard,
        )

    def advance_schedule(self) -> None:
        step_schedule(self.scheduler)

    def signature(self) -> dict[str, Any]:
        assert self.model is not None
        return self.zero.signature if self.zero is not None else model_signature(self.model)

    def full_state(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on the CPU (every worker takes part; all receive them)."""
        assert self.model is not None
        if self.zero is not None:
            return full_weights(self.model)
        return get_model_state_dict(self.model, options=FULL)

    def save(self, directory: str) -> None:
        """Write ``policy/`` and ``optimizer.pt`` into the checkpoint directory (rank 0 writes)."""
        assert self.model is not None
        if self.zero is not None:
            weights = full_weights(self.model)
            optimizer = full_optimizer_state(self.model, self.optimizer, self.zero.names, self.zero.keys)
        else:
            weights = get_model_state_dict(self.model, options=FULL)
            optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=FULL)
        if self.rank != 0:
            return
        out = Path(directory)
        save_model(self.model, self.processor, out / POLICY_DIR, state_dict=weights)  # type: ignore[arg-type]
        save_torch({"optimizer": optimizer, "scheduler": self.scheduler.state_dict()}, out / OPTIMIZER_FILE)

    def save_chunks(self) -> Iterator[Chunk]:
        """:meth:`save` into a folder of this node, then (rank 0) its files in chunks for the driver."""
        with tempfile.TemporaryDirectory(prefix="triune-checkpoint-") as folder:
            self.save(folder)
            if self.rank == 0:
                yield from file_chunks(Path(folder))

    def load_chunks(self, refs: Sequence[Any]) -> None:
        """Load a checkpoint the driver sent as chunks in Ray's object store (:func:`file_chunks`)."""
        with tempfile.TemporaryDirectory(prefix="triune-checkpoint-") as folder:
            receive_chunks(Path(folder), refs)
            self.load(folder)

    def load(self, directory: str) -> None:
        """Load a checkpoint written by any number of workers (the states on disk are whole)."""
        assert self.model is not None
        path = Path(directory)
        weights = read_policy_weights(self.model, path / POLICY_DIR)
        self._load_weights(weights)
        self._load_optimizer(read_optimizer_state(path))

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Load ``{"model", "optimizer", "scheduler"}`` (a checkpoint of format 1)."""
        self._load_weights(dict(state["model"]))
        self._load_optimizer(state)

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        assert self.model is not None
        if self.zero is not None:
            load_full_weights(self.model, weights)
        else:
            set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True))

    def _load_optimizer(self, state: Mapping[str, Any]) -> None:
        assert self.model is not None
        optimizer = state["optimizer"]
        if self.zero is not None:
            load_optimizer_state(self.model, self.optimizer, self.zero.names, optimizer)
        elif _keyed_by_position(optimizer):  # written by a single-process run
            self.optimizer.load_state_dict(optimizer)
        else:
            set_optimizer_state_dict(
                self.model, self.optimizer, optimizer, options=StateDictOptions(full_state_dict=True)
            )
        self.scheduler.load_state_dict(state["scheduler"])

    def close(self) -> None:
        leave_group()


@dataclass(frozen=True)
class ZeroParts:
    """What a DeepSpeed worker keeps beside the model: the engine, and what ZeRO flattens away."""

    engine: Any  # deepspeed.DeepSpeedEngine
    names: list[list[str]]  # parameter names of each optimizer group, in order
    keys: list[str]  # the torch optimizer's group hyper-parameters (lr, betas, ...)
    signature: dict[str, Any]  # model_signature before ZeRO-3 emptied the parameters


def _keyed_by_position(optimizer_state: Mapping[str, Any]) -> bool:
    """Whether an optimizer state dict is torch's own (parameters by position), not keyed by name."""
    return all(isinstance(key, int) for key in optimizer_state.get("state", {}))


def _node_address() -> str:
    """This node's address as Ray sees it (other nodes reach the rendezvous there)."""
    import ray

    return str(ray.util.get_node_ip_address())


class InProcessPolicy:
    """``engine.kind: local``, ``sharding`` fsdp or deepspeed: one worker in this process (a group of one).

    The single-GPU form of the sharded path (with ``engine.offload``, parameters and optimizer
    states live in CPU memory); the same code as a Ray worker, without Ray.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.worker = PolicyWorker(config.model_dump(mode="json"), 0, 1)
        address, port = self.worker.rendezvous()
        self.worker.join(address, port)

    def generate(self, prompts: Sequence[RolloutPrompt], **kwargs: Any) -> list[Rollout]:
        return self.worker.generate(prompts, **kwargs)

    def update(
        self, rollouts: Sequence[Rollout], advantages: torch.Tensor, config: UpdateConfig
    ) -> dict[str, float]:
        lengths = [r.response_length for r in rollouts]
        return self.worker.update(rollouts, advantages, lengths, [0] * len(lengths), config).metrics()

    def advance_schedule(self) -> None:
        self.worker.advance_schedule()

    def signature(self) -> dict[str, Any]:
        return self.worker.signature()

    def save(self, directory: Path) -> None:
        self.worker.save(str(directory))

    def load(self, directory: Path) -> None:
        self.worker.load(str(directory))

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.worker.load_state(state)

    def close(self) -> None:
        self.worker.close()
