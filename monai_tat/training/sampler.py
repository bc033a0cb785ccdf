"""Endless batch samplers for iteration-based training, with DistributedSampler-style sharding.

Both samplers yield lists of dataset indices forever (or ``num_batches`` times). Every pool of
indices is reshuffled each time it is used up (an "epoch" of that pool) with a generator seeded
from ``seed`` and the epoch number, so all ranks of a distributed run agree on the permutation
and each rank takes its own disjoint share of it, like ``torch.utils.data.DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from monai_tat.errors import UserInputError

__all__ = ["TaskBalancedBatchSampler", "RandomBatchSampler"]


def _distributed_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """World size and rank from torch.distributed when initialised, else (1, 0)."""
    dist = torch.distributed
    ready = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if ready else 1
    if rank is None:
        rank = dist.get_rank() if ready else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}.")
    return num_replicas, rank


class _IndexStream:
    """Endless stream of this rank's indices from one pool, reshuffled per pass over the pool."""

    def __init__(self, pool: Sequence[int], seed: int, shuffle: bool, num_replicas: int, rank: int) -> None:
        self.pool = torch.as_tensor(list(pool), dtype=torch.long)
        self.seed, self.shuffle = seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._buffer: list[int] = []

    def _next_epoch(self) -> list[int]:
        n = len(self.pool)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self.pool[torch.randperm(n, generator=g)]
        else:
            order = self.pool
        self.epoch += 1
        # Pad by repeating so every rank gets the same number of indices (as DistributedSampler).
        per_rank = -(-n // self.num_replicas)
        total = per_rank * self.num_replicas
        order = order.repeat(-(-total // n))[:total]
        return order[self.rank : total : self.num_replicas].tolist()

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if not self._buffer:
                self._buffer = self._next_epoch()
            need = k - len(out)
            out.extend(self._buffer[:need])
            self._buffer = self._buffer[need:]
        return out


class TaskBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``samples_per_task`` samples of every task, shuffled together (TAT: 4 per task).

    Equivalent to drawing from one loader per task and concatenating: each task's indices are
    consumed in a fresh random order per pass, so a small task is repeated more often than a
    large one and every batch holds the same number of samples of each task.

    Args:
        tasks: the task name of every dataset index (``dataset.tasks``).
        samples_per_task: k, samples of each task per batch and per process.
        shuffle: shuffle each task's order per pass and the order inside each batch.
        seed: base seed; identical on all ranks.
        num_replicas, rank: distributed sharding (default: from torch.distributed when initialised);
            each rank draws k per task from its own disjoint share of every task's indices.
        num_batches: stop after this many batches (``None``: endless).

    Example::

        sampler = TaskBalancedBatchSampler(dataset.tasks, samples_per_task=4)
        loader = monai.data.DataLoader(dataset, batch_sampler=sampler, num_workers=4)
    """

    def __init__(
        self,
        tasks: Sequence[str],
        samples_per_task: int = 4,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_batches: int | None = None,
    ) -> None:
        if samples_per_task < 1:
            raise ValueError(f"samples_per_task must be at least 1, got {samples_per_task}.")
        if len(tasks) == 0:
            raise UserInputError("the training dataset is empty; check the datalist's 'training' entries.")
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.samples_per_task, self.shuffle, self.seed = samples_per_task, shuffle, seed
        self.num_batches = num_batches
        names = list(dict.fromkeys(tasks))  # first-seen order, deterministic
        self.task_names = tuple(names)
        self._streams = [
            _IndexStream(
                [i for i, t in enumerate(tasks) if t == name], seed + 7919 * k, shuffle, self.num_replicas, self.rank
            )
            for k, name in enumerate(names)
        ]
        self._generator = torch.Generator().manual_seed(seed + 104729 * (self.rank + 1))

    @property
    def batch_size(self) -> int:
        """Samples per batch on this process: ``samples_per_task * number of tasks``."""
        return self.samples_per_task * len(self._streams)

    def __iter__(self) -> Iterator[list[int]]:
        count = 0
        while self.num_batches is None or count < self.num_batches:
            batch = [i for s in self._streams for i in s.take(self.samples_per_task)]
            if self.shuffle:
                batch = [batch[j] for j in torch.randperm(len(batch), generator=self._generator).tolist()]
            yield batch
            count += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless sampler has no length; pass num_batches for a finite one.")
        return self.num_batches


class RandomBatchSampler(TaskBalancedBatchSampler):
    """Endless batches of ``batch_size`` random samples of mixed tasks (AMIR: 8 per batch).

    Args:
        num_samples: dataset length.
        batch_size: samples per batch and per process.
        shuffle, seed, num_replicas, rank, num_batches: as :class:`TaskBalancedBatchSampler`.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int = 8,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_batches: int | None = None,
    ) -> None:
        # One pool holding every index: the task-balanced machinery with a single "task".
        super().__init__(["all"] * num_samples, batch_size, shuffle, seed, num_replicas, rank, num_batches)
