"""The confidence map as a MONAI dictionary transform, for a bundle's postprocessing.

:class:`ConfidenceMapd` takes the preprocessed input of a bundle's evaluator, in physical units (the
shipped bundles' preprocessing keeps them; a pipeline that maps to the model range with an
invertible transform such as ``TaskIntensityd`` is brought back with MONAI's ``Invertd`` through
that preprocessing), and computes the confidence map beside the restoration with
:func:`~monai_tat.inference.confidence.restore_with_confidence` (the same map ``monai-tat restore
--confidence`` writes): a volume of the input's grid in the task's units, high where fine detail
should not be trusted. A ``SaveImaged`` after it writes the map next to the prediction.

Example (the bundles' ``inference.json``, enabled with ``--confidence True``)::

    {"_target_": "monai_tat.inference.confidence_transform.ConfidenceMapd", "keys": "image",
     "network": "@network", "preprocessing": "@preprocessing", "enabled": "@confidence"}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, MapTransform
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.inference.kspace_consistency import KSpaceConsistencyMode, check_kspace_consistency_mode

__all__ = ["ConfidenceMapd"]


class ConfidenceMapd(MapTransform):
    """Add a confidence map of each ``keys`` image under ``confidence_key`` (a channel-first MetaTensor).

    Args:
        keys: the preprocessed input image(s), channel-first ``(1, *spatial)``.
        network: the bundle's restoration network (in eval mode while the map is computed).
        preprocessing: the transform that made ``keys`` (inverted with ``Invertd`` to physical units).
        task_key: the item's task name (``ResolveTaskd`` puts it there).
        confidence_key: where the map goes; with several ``keys``, ``"<key>_<confidence_key>"``.
        enabled: False makes the transform a no-op (the bundles' ``confidence`` setting).
        batch_size, kspace_consistency, self_ensemble: as the bundle's inferer, so that the map is
            of the restoration the bundle writes.
        allow_missing_keys: skip missing ``keys`` instead of raising.

    The map is float32 on the input's grid (same affine and metadata, so ``SaveImaged`` names it
    after the input), in the task's physical units; its ``meta["confidence"]`` says what it holds.
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: nn.Module,
        preprocessing: Compose,
        task_key: str = "task",
        confidence_key: str = "confidence",
        enabled: bool = True,
        batch_size: int | None = None,
        kspace_consistency: KSpaceConsistencyMode = "auto",
        self_ensemble: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.network, self.preprocessing = network, preprocessing
        self.task_key, self.confidence_key, self.enabled = task_key, confidence_key, bool(enabled)
        self.batch_size, self.self_ensemble = batch_size, bool(self_ensemble)
        self.kspace_consistency = check_kspace_consistency_mode(kspace_consistency)

    def _output_key(self, key: Hashable) -> str:
        return self.confidence_key if len(self.keys) == 1 else f"{key}_{self.confidence_key}"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        task = d.get(self.task_key)
        if task is None:
            raise UserInputError(f"the confidence map needs the item's task under '{self.task_key}' "
                                 "(ResolveTaskd in the preprocessing puts it there)")
        for key in self.key_iterator(d):
            physical = Invertd(keys=key, transform=self.preprocessing, orig_keys=key)(dict(d))[key]
            if physical.ndim < 3 or physical.shape[0] != 1:
                raise UserInputError(f"the confidence map takes a channel-first (1, H, W[, D]) image under "
                                     f"'{key}', got shape {tuple(physical.shape)}")
            image = MetaTensor(physical.as_tensor()[0].float().cpu(), meta=dict(physical.meta))
            parameter = next(iter(self.network.parameters()), None)
            device = parameter.device if parameter is not None else torch.device("cpu")
            with torch.no_grad():
                _, confidence = restore_with_confidence(
                    image, self.network, str(task), device=device, batch_size=self.batch_size,
                    kspace_consistency=self.kspace_consistency, self_ensemble=self.self_ensemble)
            d[self._output_key(key)] = MetaTensor(confidence.as_tensor()[None], meta=dict(confidence.meta))
        return d
