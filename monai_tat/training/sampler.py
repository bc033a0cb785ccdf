"""Endless batch samplers for iteration-based training, with DistributedSampler-style sharding.

Both samplers yield lists of dataset indices forever (or ``num_batches`` times). Every pool of
indices is reshuffled each time it is used up (an "epoch" of that pool) with a generator seeded
from ``seed`` and the epoch number, so all ranks of a distributed run agree on the permutation
and each rank takes its own disjoint share of it, like ``torch.utils.data.DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

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


def _per_task_counts(samples_per_task: int | Mapping[str, int], names: Sequence[str]) -> list[int]:
    """Samples of each task (in ``names`` order) per batch; a mapping must name exactly the dataset's tasks."""
    if isinstance(samples_per_task, Mapping):
        missing = [n for n in names if n not in samples_per_task]
        unknown = [t for t in samples_per_task if t not in names]
        if missing or unknown:
            raise UserInputError(
                f"samples_per_task must give a count for each task of the training data {sorted(names)}; "
                + (f"missing {missing}" if missing else "") + ("; " if missing and unknown else "")
                + (f"no training data for {unknown}" if unknown else "") + "."
            )
        counts = [samples_per_task[n] for n in names]
    else:
        counts = [samples_per_task] * len(names)
    for name, k in zip(names, counts):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"samples_per_task must be a whole number of at least 1 for every task, got {k!r} for {name!r}.")
    return counts


class TaskBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``samples_per_task`` samples of every task, shuffled together (TAT: 4 per task).

    Equivalent to drawing from one loader per task and concatenating: each task's indices are
    consumed in a fresh random order per pass, so a small task is repeated more often than a
    large one and every batch holds the same number of samples of each task.

    Args:
        tasks: the task name of every dataset index (``dataset.tasks``).
        samples_per_task: k, samples of each task per batch and per process; or a mapping
            ``{task: k_task}`` naming every task of the dataset, to weight the tasks (e.g. more MRI
            patches in a fine-tuning run).
        shuffle: shuffle each task's order per pass and the order inside each batch.
        seed: base seed; identical on all ranks.
        num_replicas, rank: distributed sharding (default: from torch.distributed when initialised);
            each rank draws k per task from its own disjoint share of every task's indices.
        num_batches: stop after this many batches (``None``: endless).

    Example::

        sampler = TaskBalancedBatchSampler(dataset.tasks, samples_per_task=4)
        weighted = TaskBalancedBatchSampler(dataset.tasks, samples_per_task={"ct": 2, "pet": 2, "mri": 4})
        loader = monai.data.DataLoader(dataset, batch_sampler=sampler, num_workers=4)
    """

    def __init__(
        self,
        tasks: Sequence[str],
        samples_per_task: int | Mapping[str, int] = 4,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_batches: int | None = None,
    ) -> None:
        if len(tasks) == 0:
            raise UserInputError("the training dataset is empty; check the datalist's 'training' entries.")
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.shuffle, self.seed = shuffle, seed
        self.num_batches = num_batches
        names = list(dict.fromkeys(tasks))  # first-seen order, deterministic
        self.task_names = tuple(names)
        self.samples_per_task = samples_per_task
        self._counts = _per_task_counts(samples_per_task, names)
        self._streams = [
            _IndexStream(
                [i for i, t in enumerate(tasks) if t == name], seed + 7919 * k, shuffle, self.num_replicas, self.rank
            )
            for k, name in enumerate(names)
        ]
        self._generator = torch.Generator().manual_seed(seed + 104729 * (self.rank + 1))

    @property
    def batch_size(self) -> int:
        """Samples per batch on this process: the sum of the tasks' sample counts."""
        return sum(self._counts)

    def __iter__(self) -> Iterator[list[int]]:
        count = 0
        while self.num_batches is None or count < self.num_batches:
            batch = [i for s, k in zip(self._streams, self._counts) for i in s.take(k)]
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
