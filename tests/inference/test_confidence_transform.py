"""ConfidenceMapd, the bundles' postprocessing step: the map of ``restore_with_confidence`` from the
preprocessed image, channel-first, on the image's grid, in task units; zero for a flip-invariant network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_standins import Skewed
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference import ResolveTaskd
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.inference.confidence_transform import ConfidenceMapd
from monai_tat.transforms.task_intensity import TaskIntensityd


class _Pointwise(nn.Module):
    """Exactly flip-invariant: acts on each pixel alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.9 * x + 0.02


def _preprocessed(task: str = "ct") -> tuple[dict, Compose, MetaTensor]:
    """A CT item through the bundles' preprocessing (channel first, task, intensity mapping)."""
    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 120.0, size=(24, 16, 3)).astype(np.float32)
    hu[:3] = -1000.0
    affine = torch.tensor([[0.8, 0, 0, -10.0], [0, 0.7, 0, 5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1.0]], dtype=torch.float64)
    image = MetaTensor(torch.from_numpy(hu), affine=affine, meta={"filename_or_obj": "ct.nii.gz"})
    preprocessing = Compose([EnsureChannelFirstd("image", channel_dim="no_channel"),
                             ResolveTaskd("image", task_key="task", task=task),
                             TaskIntensityd("image", task_key="task")])
    return preprocessing({"image": image}), preprocessing, image


def test_the_map_is_the_library_map_channel_first_on_the_grid_in_hu() -> None:
    item, preprocessing, image = _preprocessed()
    assert float(item["image"].max()) <= 1.5  # model range: the transform must map it back itself
    net = Skewed()
    out = ConfidenceMapd("image", net, preprocessing)(item)
    confidence = out["confidence"]
    assert confidence.shape == (1, *image.shape)
    torch.testing.assert_close(confidence.affine, image.affine)
    assert confidence.meta["confidence"]["units"] == "HU" and confidence.meta["filename_or_obj"] == "ct.nii.gz"
    _, expected = restore_with_confidence(image, net, task="ct", device="cpu")
    np.testing.assert_allclose(confidence[0].numpy(), expected.numpy(), atol=2e-2)
    assert float(confidence.max()) > 1.0
    assert out["image"] is item["image"]  # the item's own image is left as it was


def test_a_flip_invariant_network_gives_a_zero_map_and_disabled_gives_none() -> None:
    item, preprocessing, _ = _preprocessed()
    out = ConfidenceMapd("image", _Pointwise(), preprocessing)(item)
    assert float(out["confidence"].abs().max()) == 0.0
    assert "confidence" not in ConfidenceMapd("image", _Pointwise(), preprocessing, enabled=False)(item)


def test_an_item_without_its_task_is_refused() -> None:
    item, preprocessing, _ = _preprocessed()
    del item["task"]
    with pytest.raises(UserInputError, match="needs the item's task under 'task'"):
        ConfidenceMapd("image", _Pointwise(), preprocessing)(item)
