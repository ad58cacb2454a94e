"""Several processes with PyTorch's own distributed package: ``torchrun`` + DDP.

Nothing here starts processes.  :func:`setup` checks the launch variables torchrun (or a
user) set and joins that process group with the device's backend (``gloo`` on CPU, ``nccl``
on CUDA).  Every other function is the identity or a no-op without a process group, so
single-process code runs unchanged, bit for bit.  How the trainers use them (DDP retraining,
sharded inversion with all-reduced generator gradients, one gathered garbage pool, per-rank
BatchNorm statistics averaged after every epoch): :doc:`the distributed guide </guide/distributed>`.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from datetime import timedelta
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

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
    return all(k in os.environ for k in _LAUNCH_ENV)


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: "str | torch.device" = "cpu", backend: Optional[str] = None) -> torch.device:
    """Join the process group ``torchrun`` describes (nothing when not launched by it, or when a
    group exists already) and return this rank's device (``cuda`` -> ``cuda:LOCAL_RANK``);
    ``backend``: default :func:`backend_for` the device, or ``NIOOD_DIST_BACKEND``.

    Every launch variable is checked first (a ``ConfigError`` names the wrong one).  The
    processes wait for each other at ``MASTER_ADDR:MASTER_PORT`` at most
    ``NIOOD_DIST_JOIN_TIMEOUT_MIN`` minutes (5), saying so on stderr after two seconds; Ctrl-C
    ends the wait.  The group's timeout is ``NIOOD_DIST_TIMEOUT_MIN`` minutes (180): the other
    ranks wait in a barrier while rank 0 scores and writes."""
    dev = torch.device(device)
    if not launched():
        _check_partial()
        return dev
    if not dist.is_available():
        raise ConfigError(f"launched as one of a group, but this build of torch has no torch.distributed: {_ONE}")
    s = _settings()
    if dev.type == "cuda":
        dev = _cuda_device(dev, s)
        torch.cuda.set_device(dev)
    if active():
        return dev
    name = _backend(backend, dev)
    store = _join(s)
    store.set_timeout(timedelta(minutes=s.timeout_min))
    dist.init_process_group(name, store=dist.PrefixStore("default_pg", store), rank=s.rank,
                            world_size=s.world_size, timeout=timedelta(minutes=s.timeout_min))
    return dev


# ---- launch settings, checked before joining a group -------------------------------------------

_LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
JOIN_TIMEOUT_ENV = "NIOOD_DIST_JOIN_TIMEOUT_MIN"
_ONE = "or unset RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT to run one process"
_NOTE_AFTER_S = 2.0  # a wait longer than this is announced on stderr
_POLL_S = 0.1  # how often a waiting process looks again (and how soon it sees Ctrl-C)


_Launch = NamedTuple("_Launch", [("rank", int), ("world_size", int), ("local_rank", Optional[int]), ("where", str),
                                  ("addr", str), ("port", int), ("timeout_min", float), ("join_min", float)])


def _check_partial() -> None:
    """Some launch variables without the others: a hand launch that forgot one (else: N single runs)."""
    have = [k for k in _LAUNCH_ENV if k in os.environ]
    if {"MASTER_ADDR", "MASTER_PORT"} & set(have) and {"RANK", "WORLD_SIZE"} & set(have):
        missing = ", ".join(k for k in _LAUNCH_ENV if k not in have)
        raise ConfigError(f"{', '.join(have)} set but {missing} not: set all four for one process of a group "
                          f"(torchrun does), {_ONE}")


def _env_int(name: str, low: int, high: Optional[int], what: str) -> int:
    raw = os.environ[name]
    value = int(raw) if raw.strip().lstrip("-").isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        span = f"{low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name}={raw!r} is not a whole number {span}: {what}")
    return value


def _env_minutes(name: str, default: float, what: str) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={raw!r} is not a positive number of minutes: {what}")
    return value


def _settings() -> _Launch:
    """The launch variables, each checked; a :class:`ConfigError` names the first one wrong."""
    world = _env_int("WORLD_SIZE", 1, None, f"give the number of processes (torchrun sets it), {_ONE}")
    r = _env_int("RANK", 0, None, f"give this process's rank, 0 to WORLD_SIZE-1 (torchrun sets it), {_ONE}")
    if r >= world:
        raise ConfigError(f"RANK={r} is not below WORLD_SIZE={world}: give the processes the ranks 0 to {world - 1}, "
                          "one each")
    local_world = world
    if "LOCAL_WORLD_SIZE" in os.environ:
        local_world = _env_int("LOCAL_WORLD_SIZE", 1, world, "give the number of processes on this machine")
    local = None
    if "LOCAL_RANK" in os.environ:
        local = _env_int("LOCAL_RANK", 0, local_world - 1, "give this process's index on its machine (its GPU)")
    port = _env_int("MASTER_PORT", 1, 65535, "give the TCP port where rank 0 hosts the rendezvous, e.g. 29500")
    addr = os.environ["MASTER_ADDR"].strip()
    try:
        socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)  # an empty name does not resolve either
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"MASTER_ADDR={addr!r} does not resolve ({getattr(exc, 'strerror', None) or exc}): give the "
                          "host name or IP address of the machine of rank 0") from None
    timeout = _env_minutes("NIOOD_DIST_TIMEOUT_MIN", 180.0, "how long a rank waits for the others in the run, e.g. 180")
    join = _env_minutes(JOIN_TIMEOUT_ENV, 5.0, "how long the processes wait for each other at the start, e.g. 5")
    return _Launch(r, world, local, f"{addr}:{port}", addr, port, timeout, join)


def _backend(backend: Optional[str], dev: torch.device) -> str:
    """The backend to use, checked against this torch build and the device."""
    given, source = (backend, "backend") if backend else (os.environ.get("NIOOD_DIST_BACKEND"), "NIOOD_DIST_BACKEND")
    if not (given or "").strip():
        return backend_for(dev)
    name = given.strip().lower()
    if name not in dist.Backend.backend_list or name == "undefined":
        raise ConfigError(f"{source}={given!r} is not a torch.distributed backend: use gloo (CPU) or nccl (CUDA)")
    if not dist.is_backend_available(name):
        raise ConfigError(f"{source}={given!r} is not available in this build of torch: use gloo")
    need = {"nccl": "cuda", "xccl": "xpu"}.get(name)
    if need and dev.type != need:
        raise ConfigError(f"{source}={given!r} needs device {need!r}, but this process runs on {dev.type!r}: use "
                          f"--device {need} or unset {source} (gloo)")
    return name


def _cuda_device(dev: torch.device, s: _Launch) -> torch.device:
    """``cuda:LOCAL_RANK``, checked against the GPUs this process sees."""
    if dev.index is not None and s.world_size > 1:
        raise ConfigError(f"device {str(dev)!r} under torchrun would put every process on one GPU: give 'cuda' "
                          "(each process takes cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES")
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    if seen == 0:
        raise ConfigError(f"device {str(dev)!r} but this process sees no CUDA GPU{where}: use --device cpu (gloo)")
    if dev.index is None and s.local_rank is None and s.world_size > 1:
        raise ConfigError("LOCAL_RANK is not set: with device 'cuda' each process takes the GPU cuda:LOCAL_RANK; "
                          "set it to 0, 1, ... on each machine (torchrun does)")
    index = dev.index if dev.index is not None else (s.local_rank or 0)
    if index >= seen:
        what = f"LOCAL_RANK={index}" if dev.index is None else f"device {str(dev)!r}"
        raise ConfigError(f"{what} but this process sees {seen} "
                          f"GPU(s){where}: start at most {seen} processes per machine, one per GPU")
    return torch.device("cuda", index)


# ---- rendezvous: bounded, announced, interruptible ---------------------------------------------

def _join(s: _Launch) -> "dist.Store":
    """Meet the other processes at ``MASTER_ADDR:MASTER_PORT`` within the join timeout; returns the
    store for the process group.  torch's own rendezvous blocks in C++ for the group timeout, deaf
    to Ctrl-C; here each blocking call is short and the waiting is in Python (Ctrl-C within _POLL_S)."""
    deadline, t0, said = time.monotonic() + s.join_min * 60, time.monotonic(), [""]
    op = timedelta(seconds=max(1.0, min(10.0, s.join_min * 60)))  # one store call, not the whole wait

    def note(what: str, done: bool = False) -> None:  # once past _NOTE_AFTER_S, and when it changes
        if done or (time.monotonic() - t0 >= _NOTE_AFTER_S and what != said[0]):
            said[0] = what
            tail = "" if done else f"; timeout {s.join_min:g} min ({JOIN_TIMEOUT_ENV})"
            print(f"niood: rank {s.rank}: {what}{tail}", file=sys.stderr, flush=True)

    if s.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":  # else torchrun's agent hosts it
        try:
            base = dist.TCPStore(s.addr, s.port, s.world_size, True, op, wait_for_workers=False)
        except dist.DistError as exc:
            if "EADDRINUSE" in str(exc) or "in use" in str(exc):
                raise ConfigError(f"MASTER_PORT={s.port} is in use on this machine (another run, or another process "
                                  f"with RANK=0): choose a free port") from None
            raise ConfigError(f"rank 0 cannot host the rendezvous at {s.where} ({_first_line(exc)}): MASTER_ADDR must "
                              "name this machine, MASTER_PORT a free port") from None
    else:
        base = _connect(s, deadline, op, note)
    store, w = dist.PrefixStore(f"niood_join/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base), s.world_size
    try:
        if store.add(f"rank/{s.rank}", 1) > 1:
            raise ConfigError(f"RANK={s.rank} is taken by another process at {s.where}: give each process its own "
                              f"RANK, 0 to {w - 1}")
        store.add("joined", 1)
        while (joined := store.add("joined", 0)) < w:
            if store.check(["abort"]):
                raise ConfigError(store.get("abort").decode())
            if time.monotonic() > deadline:
                missing = [i for i in range(w) if not store.check([f"rank/{i}"])]
                names = ", ".join(map(str, missing[:8])) + (f", ... ({len(missing)})" if len(missing) > 8 else "")
                msg = (f"rank(s) {names} of WORLD_SIZE={w} did not arrive at {s.where} within {s.join_min:g} min: "
                       f"start them with the same MASTER_ADDR and MASTER_PORT, fix WORLD_SIZE, or raise "
                       f"{JOIN_TIMEOUT_ENV}")
                store.set("abort", msg)  # the others stop with the same line
                time.sleep(3 * _POLL_S)  # and read it before this process (maybe the store's host) ends
                raise ConfigError(msg)
            note(f"waiting for {w - joined} of {w} processes at {s.where}")
            time.sleep(_POLL_S)
    except dist.DistError as exc:
        raise ConfigError(f"lost the rendezvous at {s.where} while waiting for the other processes "
                          f"({_first_line(exc)}): its host (rank 0, or torchrun) ended; see its message") from None
    if said[0]:
        note(f"all {w} processes joined", done=True)
    return base


def _connect(s: _Launch, deadline: float, op: timedelta, note: Callable[[str], None]) -> "dist.Store":
    """A client of the rendezvous store, once something listens there (looked for with a plain
    socket: torch's client would retry inside C++ until its timeout)."""
    last = "nothing listens there"
    while True:
        try:
            with socket.create_connection((s.addr, s.port), timeout=1.0):
                pass
            return dist.TCPStore(s.addr, s.port, s.world_size, False, op)
        except OSError as exc:
            last = exc.strerror or str(exc) or type(exc).__name__
        except dist.DistError as exc:
            last = _first_line(exc)
        if time.monotonic() > deadline:
            raise ConfigError(f"no rendezvous at {s.where} after {s.join_min:g} min ({last}): start the process with "
                              f"RANK=0 (it hosts the rendezvous) with the same MASTER_ADDR and MASTER_PORT, or raise "
                              f"{JOIN_TIMEOUT_ENV}")
        note(f"waiting for rank 0 at {s.where} (it hosts the rendezvous)")
        time.sleep(_POLL_S)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
