"""Collective operations over the workers' torch.distributed process group (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the group's rendezvous port)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def join_group(*, address: str, port: int, rank: int, world: int, timeout_s: float) -> str:
    """Join the workers' process group; returns the backend (nccl with a GPU, else gloo).

    ``timeout_s`` bounds every collective: a worker that stops answering fails the step after
    that long instead of hanging it.
    """
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{address}:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    return backend


def leave_group() -> None:
    """Leave the process group when this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class TorchCollective:
    """:class:`trainer.algo.shard.Collective` over the default process group.

    ``lockstep`` (FSDP): gradients are reduced by FSDP itself, and every worker must run the
    same forward/backward passes. Otherwise every worker holds the whole model, and
    :meth:`sum_gradients` sums the gradients in one flat all-reduce.
    """

    def __init__(self, device: torch.device, *, lockstep: bool, world: int) -> None:
        self.device = device
        self._lockstep = lockstep
        self.world = world

    @property
    def lockstep(self) -> bool:
        return self._lockstep

    @property
    def loss_scale(self) -> float:
        """FSDP averages the gradients over the workers: a loss scaled by their number sums them."""
        return float(self.world) if self._lockstep else 1.0

    @property
    def owns_step(self) -> bool:
        """The update clips and steps the torch optimizer itself (see :class:`DeepSpeedCollective`)."""
        return False

    def owned_step(self, finite: bool) -> float | None:
        raise NotImplementedError("the update steps the optimizer itself when owns_step is False")

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        if self._lockstep:
            return
        trainable = [p for p in params if p.requires_grad]
        if not trainable:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable]
        flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for param in trainable:
            size = param.numel()
            param.grad = flat[offset : offset + size].view_as(param).to(param.dtype)
            offset += size

    def all_true(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        if not values:
            return []
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]
