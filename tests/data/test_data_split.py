"""Patient-level splits: disjoint, reproducible, every patient once, training never empty."""

from __future__ import annotations

import pytest

from monai_tat.data import SPLITS, split_patients
from monai_tat.errors import UserInputError


def test_every_patient_gets_one_split_in_the_requested_shares():
    ids = [f"p{i:02d}" for i in range(20)]
    assignment = split_patients(ids, (0.7, 0.1, 0.2), seed=0)
    assert set(assignment) == set(ids) and set(assignment.values()) <= set(SPLITS)
    counts = {name: sum(v == name for v in assignment.values()) for name in SPLITS}
    assert counts == {"training": 14, "validation": 2, "testing": 4}


def test_repeated_ids_are_one_patient_and_seed_makes_it_reproducible():
    ids = ["a", "b", "a", "c", "b", "d"]
    first = split_patients(ids, seed=3)
    assert set(first) == {"a", "b", "c", "d"}
    assert first == split_patients(list(reversed(ids)), seed=3)
    ten = [f"p{i}" for i in range(10)]
    shuffles = {tuple(sorted(split_patients(ten, (0.5, 0.5, 0), seed=s).items())) for s in range(5)}
    assert len(shuffles) > 1  # the seed really shuffles


@pytest.mark.parametrize(
    "n, expected",
    [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (4, (2, 1, 1))],
)
def test_training_keeps_a_patient_when_there_are_few(n, expected):
    # 30 % shares round to 0 or 1 patient; testing gives way first so training is never empty
    ids = [str(i) for i in range(n)]
    assignment = split_patients(ids, (0.4, 0.3, 0.3))
    assert sorted(assignment) == sorted(ids)
    assert tuple(sum(v == name for v in assignment.values()) for name in SPLITS) == expected


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (1.0, -0.1, 0.1), (0.0, 0.0, 0.0)])
def test_bad_fractions_are_user_errors(fractions):
    with pytest.raises(UserInputError):
        split_patients(["a"], fractions)
