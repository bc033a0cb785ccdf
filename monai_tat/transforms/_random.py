"""Randomness shared by the noise simulators (LowDoseCT, LowCountPET) and their dictionary forms."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable


class SeededNoise(Randomizable):
    """Each call draws one seed from the transform's random state and builds its noise generator
    from it, so a call is reproducible from ``set_random_state`` alone."""

    _seed: int = 0

    def randomize(self, data: object = None) -> None:
        """Draw the seed of the next call's noise from the transform's random state."""
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def noise_generator(self, randomize: bool) -> np.random.Generator:
        """The generator for this call (a fresh seed first when ``randomize``)."""
        if randomize:
            self.randomize()
        return np.random.default_rng(self._seed)


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
