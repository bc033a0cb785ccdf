"""restore_volume: geometry, slicing and batching, intensity ranges, progress, cancel, OOM retry."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from inference_standins import Smoother
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.inference import RestorationCancelled, restore_file, restore_volume
from monai_tat.io import read_volume, write_volume


def _ct_volume(shape=(12, 10, 5), seed=0) -> MetaTensor:
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1000, 1500, shape).astype(np.float32)
    affine = np.array([[0.0, -0.8, 0.1, 5.0], [0.7, 0.0, 0.0, -3.0], [0.0, 0.0, 2.5, 40.0], [0, 0, 0, 1.0]])
    meta = {"modality": "CT", "units": "HU", "spacing": np.array([0.7, 0.8, 2.5]), "filename_or_obj": "x"}
    return MetaTensor(torch.from_numpy(data), affine=torch.as_tensor(affine), meta=meta)


def test_keeps_shape_geometry_and_metadata_and_inverts_exactly(identity):
    volume = _ct_volume()
    restored = restore_volume(volume, identity, "ct", device="cpu")
    assert isinstance(restored, MetaTensor) and restored.shape == volume.shape
    assert restored.dtype == torch.float32
    torch.testing.assert_close(restored.affine, volume.affine)
    assert restored.meta["modality"] == "CT" and list(restored.meta["spacing"]) == [0.7, 0.8, 2.5]
    assert restored.meta["restoration"]["task"] == "ct"
    # An identity network must give the input back through normalisation and its inverse.
    np.testing.assert_allclose(restored.numpy(), volume.numpy(), atol=1e-3)
    assert volume.meta.get("restoration") is None  # the input is not modified


@pytest.mark.parametrize("task", ["ct", "mri"])
def test_batches_equal_slice_by_slice(smoother, task):
    volume = _ct_volume(seed=1)
    if task == "mri":
        volume = MetaTensor(volume.as_tensor() + 1000.0, affine=volume.affine)
    batched = restore_volume(volume, smoother, task, device="cpu", batch_size=4)
    single = restore_volume(volume, smoother, task, device="cpu", batch_size=1)
    np.testing.assert_allclose(batched.numpy(), single.numpy(), atol=1e-3)
    if task == "ct":  # a fixed range: each 2D slice restored alone gives the same values
        for k in range(volume.shape[2]):
            alone = restore_volume((volume[..., k].numpy(), np.eye(4)), smoother, "ct", device="cpu")
            np.testing.assert_allclose(alone.numpy(), batched.numpy()[..., k], atol=1e-3)


def test_slices_follow_the_axial_axis_of_the_affine(smoother):
    volume = _ct_volume(shape=(6, 7, 4))
    restore_volume(volume, smoother, "ct", device="cpu", batch_size=2)
    assert smoother.calls == [(2, 1, 7, 6), (2, 1, 7, 6)]  # axial = axis 2; rows j, columns i
    smoother.calls.clear()
    restore_volume(volume, smoother, "ct", device="cpu", batch_size=8, axis=0)
    assert smoother.calls == [(6, 1, 4, 7)]


def test_2d_image(smoother):
    image = np.random.default_rng(2).uniform(0, 15, (9, 11)).astype(np.float32)
    restored = restore_volume(image, smoother, "pet", device="cpu")
    assert restored.shape == (9, 11) and smoother.calls == [(1, 1, 11, 9)]
    assert not np.allclose(restored.numpy(), image)  # the network did act


@pytest.mark.parametrize("network", ["tiny_tat", "tiny_amir"])
def test_tiny_papers_networks_batch_equals_single(network, request):
    net = request.getfixturevalue(network)
    volume = _ct_volume(shape=(20, 18, 3), seed=3)
    batched = restore_volume(volume, net, "ct", device="cpu", batch_size=3)
    single = restore_volume(volume, net, "ct", device="cpu", batch_size=1)
    assert batched.shape == volume.shape
    np.testing.assert_allclose(batched.numpy(), single.numpy(), atol=0.05)  # HU, float32 over a 4096 HU range


def test_amir_in_training_mode_is_run_in_eval_mode_and_left_as_found(tiny_amir):
    tiny_amir.train()
    restored = restore_volume(_ct_volume(shape=(16, 16, 2)), tiny_amir, "ct", device="cpu")
    assert restored.shape == (16, 16, 2) and tiny_amir.training


def test_out_of_range_voxels_keep_their_input_values(identity):
    volume = _ct_volume(shape=(8, 8, 2))
    data = volume.as_tensor()
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 0] = 4000.0, -2048.0, 3072.0
    smoother = Smoother()
    restored = restore_volume(volume, smoother, "ct", device="cpu")
    assert float(restored[0, 0, 0]) == 4000.0 and float(restored[1, 1, 1]) == -2048.0
    assert float(restored[2, 2, 0]) != 3072.0  # inside the range (upper bound): restored
    restore_volume(volume, identity, "ct", device="cpu")
    assert identity.max_seen <= 1.0  # the network saw its input clipped to the model range
    pet = np.full((6, 6), 3.0, dtype=np.float32)
    pet[2, 2] = 35.0  # a hot spot above 20 SUV
    restored_pet = restore_volume(pet, Smoother(), "pet", device="cpu")
    assert float(restored_pet[2, 2]) == 35.0 and float(restored_pet[2, 3]) != 3.0


def test_mri_is_not_clipped(identity):
    mri = np.random.default_rng(4).uniform(0, 1000, (10, 10, 2)).astype(np.float32)
    mri[0, 0, 0] = 5000.0
    restored = restore_volume(mri, identity, "mri", device="cpu")
    assert identity.max_seen > 1.0
    np.testing.assert_allclose(restored.numpy(), mri, rtol=1e-5, atol=1e-3)


def test_refused_images(smoother):
    nan = np.ones((4, 4, 2), dtype=np.float32)
    nan[1, 1, 1] = np.nan
    with pytest.raises(UserInputError, match="NaN"):
        restore_volume(nan, smoother, "ct", device="cpu")
    with pytest.raises(UserInputError, match="empty"):
        restore_volume(np.zeros((0, 4, 4), dtype=np.float32), smoother, "ct", device="cpu")
    with pytest.raises(UserInputError, match="2D image or a 3D volume"):
        restore_volume(np.zeros((2, 4, 4, 3), dtype=np.float32), smoother, "ct", device="cpu")
    with pytest.raises(UserInputError, match="task"):
        restore_volume(np.zeros((4, 4), dtype=np.float32), smoother, "xray", device="cpu")
    with pytest.raises(UserInputError, match="axis"):
        restore_volume(np.zeros((4, 4, 4), dtype=np.float32), smoother, "ct", device="cpu", axis=3)
    with pytest.raises(UserInputError, match="batch size"):
        restore_volume(np.zeros((4, 4), dtype=np.float32), smoother, "ct", device="cpu", batch_size=0)
    assert smoother.calls == []


def test_network_with_wrong_output_shape_is_reported():
    class Shrinks(torch.nn.Module):
        def forward(self, x):
            return x[..., :-1]

    with pytest.raises(UserInputError, match="same shape"):
        restore_volume(np.zeros((8, 8), dtype=np.float32), Shrinks(), "ct", device="cpu")


def test_progress_reaches_total_exactly_once(smoother):
    calls: list[tuple[int, int]] = []
    restore_volume(_ct_volume(shape=(6, 6, 7)), smoother, "ct", device="cpu", batch_size=3,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert sum(done == total for done, total in calls) == 1


def test_cancel_between_batches_with_event_or_callable(smoother):
    event = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 2:
            event.set()

    with pytest.raises(RestorationCancelled):
        restore_volume(_ct_volume(shape=(6, 6, 6)), smoother, "ct", device="cpu", batch_size=2,
                       progress=progress, cancel=event)
    assert seen == [0, 2] and len(smoother.calls) == 1
    with pytest.raises(RestorationCancelled):
        restore_volume(_ct_volume(shape=(6, 6, 6)), smoother, "ct", device="cpu", cancel=lambda: True)


def test_cancelled_file_restoration_leaves_no_output(tmp_path, smoother):
    write_volume(_ct_volume(shape=(6, 6, 4)), tmp_path / "in.nii.gz")
    event = threading.Event()
    with pytest.raises(RestorationCancelled):
        restore_file(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", smoother, task="ct", device="cpu",
                     progress=lambda done, total: event.set() if done else None, cancel=event)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]
    restore_file(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", smoother, task="ct", device="cpu")
    out = read_volume(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(out.affine.numpy(), read_volume(tmp_path / "in.nii.gz").affine.numpy(), atol=1e-5)


class _RunsOutOfMemory(Smoother):
    """Raises CUDA's out-of-memory error for batches larger than ``limit`` slices."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            self.calls.append(("oom", x.shape[0]))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(x)


def test_out_of_memory_batch_is_retried_smaller_never_lost():
    volume = _ct_volume(shape=(6, 6, 7))
    net = _RunsOutOfMemory(limit=2)
    calls: list[tuple[int, int]] = []
    restored = restore_volume(volume, net, "ct", device="cpu", batch_size=8,
                              progress=lambda done, total: calls.append((done, total)))
    expected = restore_volume(volume, Smoother(), "ct", device="cpu", batch_size=1)
    np.testing.assert_allclose(restored.numpy(), expected.numpy(), atol=1e-3)
    assert net.calls[:2] == [("oom", 7), ("oom", 3)]
    assert sum(shape[0] for shape in net.calls if shape[0] != "oom") == 7
    assert [d for d, t in calls if d == t] == [7]
    with pytest.raises(UserInputError, match="out of memory"):
        restore_volume(volume, _RunsOutOfMemory(limit=0), "ct", device="cpu")


def test_devices_and_mixed_precision(smoother):
    from monai_tat.inference import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserInputError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.warns(UserWarning, match="only used on CUDA"):
        restored = restore_volume(np.zeros((8, 8), dtype=np.float32), smoother, "ct", device="cpu", amp="bf16")
    assert restored.dtype == torch.float32
    with pytest.raises(UserInputError, match="mixed precision"):
        restore_volume(np.zeros((8, 8), dtype=np.float32), smoother, "ct", device="cpu", amp="int8")
