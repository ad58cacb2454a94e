"""The garbage pool: generated OOD images kept for retraining, bounded and compact.

Images in [-1, 1] are stored as ``uint8`` (``round((x + 1) * 127.5)``; error <= 1/255),
a quarter of float32's memory: the report's MNIST schedule (20 x 11,000 images) fits in
173 MB.  Three policies decide what stays once ``capacity`` is reached:

* ``"all"``       keep everything; with a capacity, adding past it raises
  (the trainer checks the schedule before it starts, so a run never dies late);
* ``"fifo"``      a ring buffer: the newest ``capacity`` images;
* ``"reservoir"`` reservoir sampling (Algorithm R): a uniform sample of all images seen.

``capacity=None`` is only allowed with ``"all"``, and means unbounded on purpose.

"""
from __future__ import annotations

import torch
from torch import Tensor
from .errors import InvalidArgumentError

POLICIES = ("all", "fifo", "reservoir")


def quantize(x: Tensor) -> Tensor:
    """[-1, 1] float -> uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def dequantize(q: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 -> [-1, 1] float."""
    return q.to(dtype) / 127.5 - 1.0


class GarbagePool:
    """A bounded store of garbage-class images (see module docstring)."""

    def __init__(self, image_shape: tuple[int, ...], capacity: int | None = 100_000,
                 policy: str = "reservoir", seed: int = 0):
        if policy not in POLICIES:
            raise InvalidArgumentError(f"unknown pool policy {policy!r}; choose one of {POLICIES}")
        if capacity is None and policy != "all":
            raise InvalidArgumentError(f"policy {policy!r} needs a capacity (an int > 0)")
        if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
            raise InvalidArgumentError(f"pool capacity must be a positive int or None, got {capacity!r}")
        self.image_shape = tuple(image_shape)
        self.capacity = capacity
        self.policy = policy
        self.seen = 0          # images ever offered to the pool
        self._size = 0
        self._next = 0         # FIFO write position
        self._rng = torch.Generator().manual_seed(seed)
        self._buf = torch.empty((capacity or 0, *self.image_shape), dtype=torch.uint8)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return self._buf.numel()

    def _grow(self, need: int) -> None:
        if need <= self._buf.shape[0]:
            return
        new = torch.empty((max(need, 2 * self._buf.shape[0]), *self.image_shape), dtype=torch.uint8)
        new[: self._size] = self._buf[: self._size]
        self._buf = new

    def add(self, images: Tensor) -> None:
        """Offer a batch ``[B, *image_shape]`` of images in [-1, 1]."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise InvalidArgumentError(f"pool holds images of shape {self.image_shape}, got {tuple(images.shape[1:])}")
        q = quantize(images.cpu())
        n = q.shape[0]
        if self.policy == "all":
            if self.capacity is not None and self._size + n > self.capacity:
                raise RuntimeError(
                    f"garbage pool full ({self.capacity} images, policy 'all'): raise pool_capacity, "
                    "or use policy 'fifo' or 'reservoir'"
                )
            self._grow(self._size + n)
            self._buf[self._size: self._size + n] = q
            self._size += n
        elif self.policy == "fifo":
            cap = self.capacity
            q = q[-cap:]
            idx = (self._next + torch.arange(q.shape[0])) % cap
            self._buf[idx] = q
            self._next = int((self._next + q.shape[0]) % cap)
            self._size = min(cap, self._size + q.shape[0])
        else:
            self._add_reservoir(q)
        self.seen += n

    def _add_reservoir(self, q: Tensor) -> None:
        cap = self.capacity
        n = q.shape[0]
        free = max(0, min(n, cap - self._size))
        if free:
            self._buf[self._size: self._size + free] = q[:free]
            self._size += free
        if free == n:
            return
        # Algorithm R for the rest: item number t (1-based) replaces slot j ~ U{0..t-1} if j < cap.
        t = self.seen + torch.arange(free, n, dtype=torch.float64) + 1
        j = (torch.rand(n - free, generator=self._rng, dtype=torch.float64) * t).long()
        keep = j < cap
        slots, items = j[keep], torch.arange(free, n)[keep]
        if slots.numel():
            # Later items win a contested slot, as in the sequential algorithm.
            last: dict[int, int] = dict(zip(slots.tolist(), items.tolist()))
            dst, src = torch.tensor(list(last.keys())), torch.tensor(list(last.values()))
            self._buf[dst] = q[src]

    def images(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """All stored images, dequantized to [-1, 1]."""
        return dequantize(self._buf[: self._size], dtype)

    def raw(self) -> Tensor:
        """All stored images as uint8 (no copy)."""
        return self._buf[: self._size]

    def state_dict(self) -> dict:
        return {"images": self.raw().clone(), "seen": self.seen, "next": self._next,
                "capacity": -1 if self.capacity is None else self.capacity, "policy": self.policy,
                "rng": self._rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        cap = None if int(state["capacity"]) < 0 else int(state["capacity"])
        if cap != self.capacity or state["policy"] != self.policy:
            raise InvalidArgumentError(
                f"pool state is for capacity={cap}, policy={state['policy']!r} but this pool has "
                f"capacity={self.capacity}, policy={self.policy!r}"
            )
        images = state["images"]
        self._size = 0
        self._grow(images.shape[0])
        self._buf[: images.shape[0]] = images
        self._size = images.shape[0]
        self.seen, self._next = int(state["seen"]), int(state["next"])
        self._rng.set_state(state["rng"])
