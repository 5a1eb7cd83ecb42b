"""Several processes, one run: DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node=N -m dapt run FILE`` starts N runners (ranks). Each runner executes
the training notebooks too, and each notebook's kernel joins a process group of its own (the
runner names it in ``DAPT_DDP_GROUP``; all groups live in the one store at
``MASTER_ADDR:MASTER_PORT``, each under its own prefix, so consecutive runs never meet).
Rank 0 writes every record; the other ranks compute and write nothing under ``runs/``.

Data parallelism keeps the single-process run's *global* batch: every rank takes its contiguous
slice of each global batch (``shard``), DDP averages the gradients of equal slices (``wrap``; for a
module called outside DDP, ``average_gradients``), which is the gradient of the global batch's mean
loss; epoch sums are reduced across ranks (``sum_across``). BatchNorm is the exception: each rank
normalises its slice with its own statistics.

Without ``WORLD_SIZE`` > 1 every helper here is the identity and nothing is initialised.
"""
from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from dapt.core.errors import DaptError
from dapt.core.ranks import is_main, local_rank, rank, world_size  # noqa: F401 (re-exported: dapt.core.distributed.is_main)

GROUP_ENV = "DAPT_DDP_GROUP"  # set by the runner: the store prefix of one run's process group
# The runners wait for each other while one of them runs a stage alone (generate, report): a long wait.
RUNNER_TIMEOUT = timedelta(days=7)
RUN_TIMEOUT = timedelta(minutes=30)  # torch's default: a rank that stops answering fails the others then


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_device(kind: str) -> torch.device:
    """The device of this rank for a device type: ``cuda:LOCAL_RANK`` on CUDA (one GPU per process)."""
    if kind == "cuda":
        return torch.device("cuda", local_rank())
    return torch.device(kind)


def _store(prefix: str, *, host: bool) -> dist.Store:
    """The store at MASTER_ADDR:MASTER_PORT under ``prefix``. ``host``: this process serves it (rank 0's
    runner when no torchrun agent serves one); run kernels are always clients of the runners' store."""
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
    if missing:
        raise DaptError(f"WORLD_SIZE={world_size()} but {', '.join(missing)} is not set; launch with "
                        f"`torchrun --nproc_per_node={world_size()} -m dapt run FILE`")
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size(),
                          is_master=host, timeout=RUNNER_TIMEOUT, multi_tenant=True)
    return dist.PrefixStore(prefix, store)


def init(device: torch.device = torch.device("cpu")) -> bool:
    """Join this run's process group when ``WORLD_SIZE`` > 1: gloo on CPU, nccl on CUDA (whose
    device becomes ``cuda:LOCAL_RANK``). Returns whether the run is distributed; idempotent."""
    if world_size() <= 1 or active():
        return active()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":  # one GPU per process, chosen by torchrun's LOCAL_RANK
        torch.cuda.set_device(rank_device("cuda"))
    prefix = os.environ.get(GROUP_ENV)
    if prefix:  # launched by `dapt run` under torchrun
        dist.init_process_group(backend, store=_store(prefix, host=False), rank=rank(), world_size=world_size(),
                                timeout=RUN_TIMEOUT)
    else:  # a notebook started by hand under a launcher: the standard env:// rendezvous
        dist.init_process_group(backend, init_method="env://", timeout=RUN_TIMEOUT)
    atexit.register(_leave)
    return True


def init_runner() -> bool:
    """The runners' own group (gloo, on the CPU): they agree on the plan and on each run's outcome."""
    if world_size() <= 1 or active():
        return active()
    agent_serves = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    dist.init_process_group("gloo", store=_store("dapt-runner", host=is_main() and not agent_serves),
                            rank=rank(), world_size=world_size(), timeout=RUNNER_TIMEOUT)
    atexit.register(_leave)
    return True


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(batch_size: int) -> None:
    """Equal slices per rank, or DDP's average of per-rank mean gradients is not the global batch's."""
    if active() and batch_size % dist.get_world_size():
        raise DaptError(f"batch_size {batch_size} does not split into {dist.get_world_size()} equal parts, one per "
                        f"process; use a multiple of {dist.get_world_size()}")


def shard(index: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (rank 0 the first, ...)."""
    return index.tensor_split(dist.get_world_size())[dist.get_rank()] if active() else index


def _wire(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` where the backend can send it: nccl only sends CUDA tensors, gloo any CPU tensor."""
    if dist.get_backend() == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor.cpu()


def sum_across(values: dict[str, float]) -> dict[str, float]:
    """Each value summed over the ranks (every rank passes the same keys in the same order)."""
    if not active():
        return values
    total = _wire(torch.tensor(list(values.values()), dtype=torch.float64))
    dist.all_reduce(total)
    return dict(zip(values, total.tolist()))


def mean_across(value: torch.Tensor) -> torch.Tensor:
    """A tensor averaged over the ranks (a copy; ``value`` itself is not changed)."""
    if not active():
        return value
    total = _wire(value.detach().clone())
    dist.all_reduce(total)
    return (total / dist.get_world_size()).to(value.device)


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` (same shape on each) concatenated in rank order: the global batch's."""
    if not active():
        return rows
    sent = _wire(rows.contiguous())
    parts = [torch.empty_like(sent) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sent)
    return torch.cat(parts).to(rows.device)


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache file), the others then run it (and read the file).

    If rank 0 raises inside, it never reaches the barrier; the others fail at it when rank 0's process ends.
    """
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_objects(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (small picklable values: a plan, a run's outcome)."""
    if not active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


class FeaturesAndLogits(nn.Module):
    """``net.forward_features`` as a module's ``forward``: DDP syncs gradients only of calls through it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_features(x)


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in DDP when distributed and it has trainable parameters; else ``module`` itself.

    DDP broadcasts rank 0's parameters and buffers now (all ranks start alike), rank 0's buffers (BatchNorm
    running statistics) again at every forward, and averages the gradients in backward.
    """
    if not active() or not any(p.requires_grad for p in module.parameters()):
        return module
    device = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


@torch.no_grad()
def share_from_main(module: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, as DDP starts a module it wraps: for a module called
    outside DDP, whose gradients ``average_gradients`` averages."""
    if active():
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor, src=0)


def average_gradients(module: nn.Module) -> None:
    """Each gradient of ``module`` averaged over the ranks after backward, as DDP averages those of a module it
    wraps (each rank's divided by the ranks, then summed: DDP's order of operations). Every rank computed the
    same graph, so each holds the same gradients to exchange, in the same order."""
    if active():
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter.grad.div_(dist.get_world_size())
                dist.all_reduce(parameter.grad)
