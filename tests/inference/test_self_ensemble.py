"""Geometric self-ensemble: the mean over the 8 flips / transpositions, in the input's orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_standins import Skewed, Smoother
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference import restore_volume
from monai_tat.inference.self_ensemble import SelfEnsemble



def _numpy_dihedral_mean(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """The same mean built independently with NumPy's rot90 (4 rotations of the image and of its mirror)."""
    outputs = []
    for mirrored in (False, True):
        base = image[:, ::-1] if mirrored else image
        for k in range(4):
            view = np.ascontiguousarray(np.rot90(base, k))
            with torch.no_grad():
                out = net(torch.from_numpy(view)[None, None])[0, 0].numpy()
            out = np.rot90(out, -k)
            outputs.append(out[:, ::-1] if mirrored else out)
    return np.mean(outputs, axis=0)


def test_equals_the_mean_over_the_dihedral_group():
    net = Skewed().eval()
    image = np.random.default_rng(1).uniform(0, 1, (12, 12)).astype(np.float32)
    with torch.no_grad():
        ensembled = SelfEnsemble(net)(torch.from_numpy(image)[None, None])[0, 0].numpy()
        plain = net(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ensembled, _numpy_dihedral_mean(net, image), atol=1e-6)
    assert np.abs(ensembled - plain).max() > 1e-3  # the skewed network is not equivariant


def test_equivariant_network_is_unchanged_on_non_square_batches():
    net = Smoother().eval()
    x = torch.rand(2, 1, 10, 7)
    with torch.no_grad():
        torch.testing.assert_close(SelfEnsemble(net)(x), net(x), atol=1e-6, rtol=0)


def test_engine_self_ensemble_equals_restoring_the_transformed_volumes():
    net = Skewed().eval()
    ct = np.random.default_rng(2).uniform(-500, 1500, (16, 16, 3)).astype(np.float32)  # inside CT's model range
    fast = restore_volume(ct, net, "ct", device="cpu", self_ensemble=True)
    assert fast.meta["restoration"]["self_ensemble"] and fast.meta["restoration"]["network"] == "Skewed"
    outputs = []
    for transpose in (False, True):
        for flips in ((), (0,), (1,), (0, 1)):
            view = ct.transpose(1, 0, 2) if transpose else ct
            view = np.flip(view, flips) if flips else view
            out = restore_volume(np.ascontiguousarray(view), net, "ct", device="cpu").numpy()
            out = np.flip(out, flips) if flips else out
            outputs.append(out.transpose(1, 0, 2) if transpose else out)
    np.testing.assert_allclose(fast.numpy(), np.mean(outputs, axis=0), atol=2e-3)  # HU


def test_a_network_returning_its_input_gives_the_input_back():
    x = torch.rand(1, 1, 6, 5)
    before = x.clone()
    torch.testing.assert_close(SelfEnsemble(nn.Identity())(x), before)
    assert torch.equal(x, before)  # the input is not written


def test_refuses_networks_that_return_tuples_and_wrong_shapes(tiny_amir):
    tiny_amir.train()
    with pytest.raises(UserInputError, match="eval mode"):
        SelfEnsemble(tiny_amir)(torch.rand(1, 1, 16, 16))
    with pytest.raises(UserInputError, match=r"\(B, C, H, W\)"):
        SelfEnsemble(Smoother())(torch.rand(1, 16, 16))
    with pytest.raises(UserInputError, match="torch.nn.Module"):
        SelfEnsemble(lambda x: x)
