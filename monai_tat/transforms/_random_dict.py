"""The dictionary form shared by the random degradation simulators (LowDoseCTd, LowCountPETd)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable


class RandomSimulatorDict(Randomizable, MapTransform):
    """Applies ``simulator_class(*args, **kwargs)`` to every key, with independent noise per key.

    Subclasses set ``simulator_class`` (and ``backend``). ``seed`` (keyword) seeds the simulator.
    """

    simulator_class: ClassVar[type]

    def __init__(self, keys: KeysCollection, *args: Any, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        seed = kwargs.pop("seed", None)
        self.simulator = self.simulator_class(*args, **kwargs)
        if seed is not None:
            self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandomSimulatorDict:
        super().set_random_state(seed, state)
        self.simulator.set_random_state(seed, state)
        return self

    def randomize(self, data: object = None) -> None:
        self.simulator.randomize()

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.simulator(d[key], randomize=True)
        return d
