"""Patient-level train/validation/test split: slices and volumes of one patient never cross splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monai_tat.errors import UserInputError

__all__ = ["SPLITS", "split_patients"]

#: Decathlon datalist keys, in order.
SPLITS: tuple[str, ...] = ("training", "validation", "testing")


def split_patients(
    patient_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """Assign every distinct patient to one of :data:`SPLITS`.

    Args:
        patient_ids: one id per volume (repeats allowed: a patient's volumes share a split).
        fractions: shares of patients for training, validation and testing (normalised to sum 1).
        seed: seed of the shuffle, so the split is reproducible.

    Returns:
        ``{patient_id: split_name}``. Counts are rounded per split; validation and testing get
        rounded shares first and training keeps at least one patient whenever there is one.
    """
    if len(fractions) != 3 or any(not f >= 0 for f in fractions) or sum(fractions) <= 0:
        raise UserInputError(
            f"split fractions must be three non-negative numbers with a positive sum, got {fractions}."
        )
    total = float(sum(fractions))
    share = [f / total for f in fractions]
    unique = sorted(set(str(p) for p in patient_ids))
    n = len(unique)
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(share[1] * n)), int(round(share[2] * n))
    if share[0] > 0:
        while n > 0 and n_val + n_test > n - 1:  # leave training at least one patient
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
    else:
        n_val = n - n_test
    names = ["validation"] * n_val + ["testing"] * n_test
    names += ["training"] * (n - len(names))
    return {unique[i]: names[rank] for rank, i in enumerate(order)}
