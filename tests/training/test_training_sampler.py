"""Task-balanced and random endless batch samplers, alone and sharded over ranks."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from monai_tat.errors import UserInputError
from monai_tat.training import RandomBatchSampler, TaskBalancedBatchSampler

TASKS = ["ct"] * 10 + ["pet"] * 3 + ["mri"] * 7


def test_every_batch_has_k_of_each_task_shuffled_together() -> None:
    sampler = TaskBalancedBatchSampler(TASKS, samples_per_task=4, seed=1)
    batches = list(itertools.islice(sampler, 20))
    assert sampler.batch_size == 12
    for batch in batches:
        assert Counter(TASKS[i] for i in batch) == {"ct": 4, "pet": 4, "mri": 4}
    # Shuffled together: tasks are not always in blocks of four.
    assert any([TASKS[i] for i in b] != sorted((TASKS[i] for i in b), key=["ct", "pet", "mri"].index) for b in batches)


def test_weighted_tasks_give_their_own_counts() -> None:
    sampler = TaskBalancedBatchSampler(TASKS, samples_per_task={"mri": 4, "ct": 2, "pet": 1}, seed=2)
    batches = list(itertools.islice(sampler, 10))
    assert sampler.batch_size == 7
    assert all(Counter(TASKS[i] for i in b) == {"ct": 2, "pet": 1, "mri": 4} for b in batches)
    mri = [i for b in batches[:7] for i in b if TASKS[i] == "mri"]  # 28 draws = 4 passes over 7 MRI samples
    assert Counter(mri) == {i: 4 for i in range(13, 20)}


def test_weighted_tasks_must_name_the_datasets_tasks() -> None:
    with pytest.raises(UserInputError, match=r"missing \['pet'\]"):
        TaskBalancedBatchSampler(TASKS, {"ct": 2, "mri": 2})
    with pytest.raises(UserInputError, match=r"no training data for \['MRI'\]"):
        TaskBalancedBatchSampler(TASKS, {"ct": 2, "pet": 2, "mri": 2, "MRI": 2})
    with pytest.raises(ValueError, match="'pet'"):
        TaskBalancedBatchSampler(TASKS, {"ct": 2, "pet": 0, "mri": 2})


def test_each_task_is_a_permutation_per_pass() -> None:
    sampler = TaskBalancedBatchSampler(TASKS, samples_per_task=5, seed=3)
    batches = list(itertools.islice(sampler, 2))
    ct = [i for b in batches for i in b if TASKS[i] == "ct"]
    assert sorted(ct) == list(range(10))  # 2 batches x 5 = one pass over the 10 CT samples
    pet = [i for b in batches for i in b if TASKS[i] == "pet"]
    assert set(pet) == {10, 11, 12} and len(pet) == 10  # small task repeats, every sample used


def test_seed_makes_it_reproducible() -> None:
    a = list(itertools.islice(TaskBalancedBatchSampler(TASKS, 2, seed=5), 6))
    b = list(itertools.islice(TaskBalancedBatchSampler(TASKS, 2, seed=5), 6))
    c = list(itertools.islice(TaskBalancedBatchSampler(TASKS, 2, seed=6), 6))
    assert a == b and a != c


def test_ranks_draw_disjoint_shares() -> None:
    ranks = [TaskBalancedBatchSampler(TASKS, samples_per_task=5, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    first = [next(iter(s)) for s in ranks]
    ct = [{i for i in b if TASKS[i] == "ct"} for b in first]
    assert ct[0].isdisjoint(ct[1]) and ct[0] | ct[1] == set(range(10))


def test_random_batches_cover_the_pool() -> None:
    sampler = RandomBatchSampler(len(TASKS), batch_size=4, seed=0, num_batches=5)
    batches = list(sampler)
    assert len(sampler) == 5 and len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(20))


def test_invalid_arguments() -> None:
    with pytest.raises(UserInputError, match="empty"):
        TaskBalancedBatchSampler([], 4)
    with pytest.raises(ValueError, match="samples_per_task"):
        TaskBalancedBatchSampler(TASKS, 0)
    with pytest.raises(ValueError, match="rank"):
        TaskBalancedBatchSampler(TASKS, 1, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="endless"):
        len(TaskBalancedBatchSampler(TASKS, 1))
