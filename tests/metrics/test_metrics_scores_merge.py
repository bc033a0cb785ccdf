"""SliceScores.merged: the shards of a distributed evaluation make the same report as one process."""

from __future__ import annotations

import numpy as np
import pytest

from monai_tat.metrics.evaluator import SliceScores


def _values(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"psnr": rng.uniform(20, 40, n), "ssim": rng.uniform(0.5, 1, n), "rmse": rng.uniform(1, 50, n)}


def test_merged_shards_equal_one_record_of_all_cases():
    cases = [(f"case{i}", _values(i, 2 + i), _values(100 + i, 2 + i)) for i in range(5)]
    whole = SliceScores()
    for name, values, baseline in cases:
        whole.add(name, values, baseline)
    shards = [SliceScores(), SliceScores()]
    for index, (name, values, baseline) in enumerate(cases):  # as DistributedSampler deals them
        shards[index % 2].add(name, values, baseline)
    merged = SliceScores.merged(shards)
    assert sorted(r["image"] for r in merged.rows) == sorted(r["image"] for r in whole.rows)
    merged_mean, whole_mean = merged.summary(), whole.summary()
    assert merged_mean.keys() == whole_mean.keys()
    for key, value in whole_mean.items():
        assert merged_mean[key] == (value if key == "image" else pytest.approx(value))
    for metric, comparison in whole.comparison().items():  # slices stay paired with their baseline
        assert merged.comparison()[metric].mean_difference == pytest.approx(comparison.mean_difference)
        assert merged.comparison()[metric].p_value == pytest.approx(comparison.p_value)
    assert SliceScores.merged([]).rows == []
