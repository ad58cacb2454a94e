"""Several processes with PyTorch's own distributed package: ``torchrun`` + DDP.

Nothing here starts processes.  Launch with ``torchrun``; :func:`setup` joins the process
group it describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) with the backend for the device (``gloo`` on CPU, ``nccl``
on CUDA).  Every other function is the identity or a no-op when no process group is
initialised, so single-process code runs unchanged and bit for bit as before.

What the trainers do with these (see :doc:`the distributed guide </guide/distributed>`):
the classifier is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` for
retraining, each rank generates its share of every inversion step and the generator's
gradients are all-reduced, generated garbage is gathered so every rank holds the same pool,
and BatchNorm keeps per-rank batch statistics (``SyncBatchNorm`` needs CUDA) with running
statistics averaged over the ranks after every epoch.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import ConfigError, InvalidArgumentError

__all__ = ["active", "rank", "world_size", "is_main", "launched", "setup", "cleanup", "backend_for", "rank_seed",
           "shard", "sampler", "check_sharded", "wrap", "FeaturesAndLogits", "all_reduce_grads", "all_reduce_sum", "all_reduce_sum_tensor",
           "all_gather_cat", "broadcast_tensors", "broadcast_module", "average_buffers", "gather_objects", "broadcast_object", "barrier"]


def active() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or no process group): the process that writes files and scores."""
    return rank() == 0


def launched() -> bool:
    """Whether a launcher (``torchrun``) started this process as one of a group: it sets
    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (a scheduler's ``RANK`` alone
    is not enough)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: "str | torch.device" = "cpu", backend: Optional[str] = None) -> torch.device:
    """Join the process group ``torchrun`` describes (nothing when not launched by it, or when a
    group exists already) and return this rank's device: ``cuda`` becomes ``cuda:LOCAL_RANK``.

    :param backend: ``gloo``, ``nccl``, ...; default :func:`backend_for` the device, or the
        ``NIOOD_DIST_BACKEND`` environment variable

    The group's timeout is ``NIOOD_DIST_TIMEOUT_MIN`` minutes (default 180): while rank 0 scores
    and writes, the others wait in a barrier.
    """
    dev = torch.device(device)
    if not launched():
        return dev
    if dev.type == "cuda" and dev.index is not None and int(os.environ["WORLD_SIZE"]) > 1:
        raise ConfigError(f"device {str(dev)!r} under torchrun would put every process on one GPU: give 'cuda' "
                          "(each process takes cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES")
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    if not active():
        # long enough for rank 0 to score and write while the others wait (NCCL's default: 10 min)
        minutes = float(os.environ.get("NIOOD_DIST_TIMEOUT_MIN", 180))
        dist.init_process_group(backend or os.environ.get("NIOOD_DIST_BACKEND") or backend_for(dev),
                                timeout=timedelta(minutes=minutes))
    return dev


def cleanup(barrier: bool = True) -> None:
    """Leave the process group, after a barrier so that no rank exits while another still talks
    (``barrier=False`` after an error: the launcher stops the other ranks)."""
    if active():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int, r: Optional[int] = None) -> int:
    """A seed for per-rank randomness: ``seed`` itself on rank 0 (a single process keeps its
    streams), a different one on every other rank."""
    r = rank() if r is None else r
    return seed if r == 0 else (seed * 1_000_003 + r) % 2**63


def shard(n: int, r: Optional[int] = None, w: Optional[int] = None) -> slice:
    """Rank ``r``'s contiguous part of ``n`` items (parts differ by at most one item)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return slice(n * r // w, n * (r + 1) // w)


def sampler(n: int, shuffle: bool = True, seed: int = 0) -> Optional[torch.utils.data.DistributedSampler]:
    """torch's :class:`~torch.utils.data.DistributedSampler` over ``n`` items for this rank, or
    ``None`` without a process group.  It pads to a multiple of the world size by repeating
    items (at most ``world_size - 1``); call ``set_epoch`` before every pass."""
    if not active():
        return None
    return torch.utils.data.DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                                               seed=seed)


def check_sharded(loader: Iterable, owner: str) -> None:
    """Under a process group of several ranks, ``loader`` must shard the data by rank."""
    w = world_size()
    if w == 1:
        return
    s = getattr(loader, "sampler", None)
    if getattr(s, "num_replicas", None) != w:
        raise InvalidArgumentError(f"{owner}: this process is one of {w} (torch.distributed), but the train loader does not "
                         f"shard the data: give it sampler=torch.utils.data.DistributedSampler(dataset) (for a "
                         f"TensorData: data.loader(..., distributed=True)); otherwise every rank trains on all of it")


class FeaturesAndLogits(nn.Module):
    """``x -> (features(x), head(features(x)))`` of a classifier with ``features`` and ``head``:
    one forward call, so DDP sees (and synchronises) both."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.classifier.features(x)
        return f, self.classifier.head(f)


def wrap(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` under a process group
    of several ranks (parameters and buffers broadcast from rank 0), else ``module`` itself."""
    if world_size() == 1:
        return module
    ids = [device] if torch.device(device).type == "cuda" else None
    # forward_sync_buffers=False: BatchNorm running statistics stay per rank during an epoch and
    # are averaged after it (average_buffers), instead of rank 0's being copied to all before
    # every forward (buffers are still copied from rank 0 once, when DDP is built)
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False,
                                               find_unused_parameters=find_unused_parameters)


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over the ranks (one flat all-reduce)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """``values`` summed over the ranks (float64)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_sum_tensor(t: Tensor) -> Tensor:
    """``t`` summed over the ranks (a new tensor on ``t``'s device; ``t`` itself in one process)."""
    if world_size() == 1:
        return t
    out = t.to(_comm_device(), copy=True)
    dist.all_reduce(out)
    return out.to(t.device)


def all_gather_cat(t: Tensor) -> Tensor:
    """Every rank's ``t`` concatenated along dim 0 in rank order (sizes may differ); on ``t``'s device."""
    w = world_size()
    if w == 1:
        return t
    dev = _comm_device()
    local = t.to(dev).contiguous()
    sizes = torch.zeros(w, dtype=torch.long, device=dev)
    sizes[rank()] = local.shape[0]
    dist.all_reduce(sizes)
    top = int(sizes.max())
    padded = torch.zeros((top, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(s)] for p, s in zip(parts, sizes)]).to(t.device)


def broadcast_tensors(tensors: Iterable[Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s values of ``tensors`` (parameters, buffers) to every rank, in place."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    broadcast_tensors([*module.parameters(), *module.buffers()], src)


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so every
    rank holds the same model after an epoch of per-rank batch statistics."""
    w = world_size()
    if w == 1:
        return
    with torch.no_grad():
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(w)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
