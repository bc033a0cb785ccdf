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


class _FailsLikeCuda(Smoother):
    """Raises ``RuntimeError(message)`` (after allocating a batch-sized activation) for batches over
    ``limit`` slices; ``activations`` holds weak references to those activations."""

    def __init__(self, limit: int, message: str) -> None:
        super().__init__()
        self.limit, self.message = limit, message
        self.activations: list = []

    def forward(self, x):
        if x.shape[0] > self.limit:
            import weakref

            activation = torch.empty(x.shape[0], 64, *x.shape[2:])
            self.activations.append(weakref.ref(activation))
            raise RuntimeError(self.message)
        return super().forward(x)


@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input.",
])
def test_cublas_and_cudnn_allocation_failures_halve_the_batch(monkeypatch, message):
    from monai_tat.inference.engine import slice_loop as engine

    volume = _ct_volume(shape=(6, 6, 5))
    net = _FailsLikeCuda(limit=2, message=message)
    released: list[bool] = []
    # The cache may be emptied only once the failed batch's activations are unreachable.
    monkeypatch.setattr(engine, "release_cached_memory",
                        lambda device: released.append(all(ref() is None for ref in net.activations)))
    restored = restore_volume(volume, net, "ct", device="cpu", batch_size=5)
    expected = restore_volume(volume, Smoother(), "ct", device="cpu", batch_size=1)
    np.testing.assert_allclose(restored.numpy(), expected.numpy(), atol=1e-3)
    assert released == [True]  # 5 failed once, then 2 + 2 + 1 ran
    with pytest.raises(UserInputError, match="out of memory.*" + message.split()[2].rstrip(".")):
        restore_volume(volume, _FailsLikeCuda(limit=0, message=message), "ct", device="cpu")
    with pytest.raises(RuntimeError, match="CUBLAS_STATUS_EXECUTION_FAILED"):  # not memory: raised as is
        restore_volume(volume, _FailsLikeCuda(limit=0, message="CUBLAS_STATUS_EXECUTION_FAILED"),
                       "ct", device="cpu")


def test_completion_event_is_recorded_on_the_working_devices_stream(monkeypatch):
    """With ``cuda:1`` while the current device is ``cuda:0`` the event must go on cuda:1's stream
    (a fake torch.cuda API records the calls; no GPU needed)."""
    from monai_tat.inference.engine import slice_loop as engine

    calls: list[tuple] = []
    current = {"device": 0}

    class FakeEvent:
        def __init__(self):
            calls.append(("Event", current["device"]))

        def record(self, stream=None):
            calls.append(("record", stream if stream is not None else ("stream", current["device"])))

    class FakeDeviceContext:
        def __init__(self, device):
            self.index, self.previous = torch.device(device).index, None

        def __enter__(self):
            self.previous, current["device"] = current["device"], self.index

        def __exit__(self, *exc):
            current["device"] = self.previous

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "device", FakeDeviceContext)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream", torch.device(device).index))
    event = engine.completion_event(torch.device("cuda:1"))
    assert isinstance(event, FakeEvent)
    assert calls == [("Event", 1), ("record", ("stream", 1))]
    assert current["device"] == 0  # the caller's current device is left as it was


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


# ---------------------------------------------------------------------------------------------
# Fast paths against the plain whole-volume path (issue 13): same values within 1e-6 relative.


class _Scale(torch.nn.Module):
    """``x * 1.01``: a network whose output differs from its input everywhere."""

    def forward(self, x):
        return x * 1.01


def _affine(perm=(0, 1, 2)) -> torch.Tensor:
    """A RAS affine whose voxel axis ``perm[r]`` runs along world axis r (so the axial axis is perm[2])."""
    affine = torch.zeros(4, 4, dtype=torch.float64)
    for row, column in enumerate(perm):
        affine[row, column] = (0.7, 0.8, 2.5)[column]
    affine[:3, 3] = torch.tensor([5.0, -3.0, 40.0])
    affine[3, 3] = 1.0
    return affine


def _ct_with_outliers(shape=(40, 36, 12), seed=0) -> np.ndarray:
    data = np.random.default_rng(seed).uniform(-1000, 2500, shape).astype(np.float32)
    data[:3] = -2048.0  # FOV padding below the model range
    data[10, 10, :] = 4000.0  # metal above it
    data[5, 5, 5], data[6, 6, 6] = 3072.0, -1024.0  # exactly on the bounds: restored
    data[7, 7, 7] = np.nextafter(np.float32(3072.0), np.float32(4000.0))  # just above: kept
    return data


def _case(name: str):
    """(image, task, restore_volume keyword arguments) of a named synthetic case."""
    rng = np.random.default_rng(7)
    ct = _ct_with_outliers()
    if name == "ct_axial_c_order":  # slices along the last, fastest axis: staged through a transpose
        return MetaTensor(torch.from_numpy(ct), affine=_affine(), meta={"modality": "CT"}), "ct", {"batch_size": 4}
    if name == "ct_non_axial_affine":  # axial axis 0 from the affine
        return MetaTensor(torch.from_numpy(ct), affine=_affine((1, 2, 0))), "ct", {"batch_size": 3}
    if name == "ct_axis_1":
        return MetaTensor(torch.from_numpy(ct), affine=_affine()), "ct", {"batch_size": 5, "axis": 1}
    if name == "ct_fortran_order":  # rows already contiguous: no staging copy
        return np.asfortranarray(ct), "ct", {"batch_size": 2}
    if name == "ct_int16":
        return (np.round(ct).astype(np.int16), _affine().numpy()), "ct", {"batch_size": 8}
    if name == "ct_inside_range":  # no voxel to keep: the mask is skipped
        return rng.uniform(-1000, 3000, (20, 18, 5)).astype(np.float32), "ct", {"batch_size": 2}
    if name == "ct_strided_view":  # not dense: generic copies
        return torch.from_numpy(ct)[::2, 1:, ::3], "ct", {"batch_size": 3}
    if name == "ct_single_slice":
        return ct[:, :, :1].copy(), "ct", {}
    if name == "pet_hot_spots":
        pet = rng.gamma(2.0, 1.5, (32, 30, 9)).astype(np.float32)
        pet[4:6, 4:6, 3], pet[7, 7, 7], pet[8, 8, 8] = 35.0, 20.0, -0.5
        return pet, "pet", {"batch_size": 2}
    if name == "mri_percentiles":  # integer signal: ties at the percentiles
        mri = np.round(rng.gamma(3.0, 300.0, (30, 28, 10))).astype(np.float32)
        mri[0, 0, 0] = 9000.0
        return MetaTensor(torch.from_numpy(mri), affine=_affine()), "mri", {"batch_size": 4}
    if name == "mri_float_axis_0":
        return rng.normal(500, 100, (17, 19, 7)).astype(np.float32), "mri", {"batch_size": 3, "axis": 0}
    if name == "mri_constant":
        return np.full((6, 5, 3), 7.0, np.float32), "mri", {}
    if name == "ct_2d":
        return rng.uniform(-1100, 3500, (65, 63)).astype(np.float32), "ct", {}
    if name == "mri_2d":
        return rng.uniform(0, 800, (21, 18)).astype(np.float32), "mri", {}
    raise KeyError(name)


CASES = ["ct_axial_c_order", "ct_non_axial_affine", "ct_axis_1", "ct_fortran_order", "ct_int16", "ct_inside_range",
         "ct_strided_view", "ct_single_slice", "pet_hot_spots", "mri_percentiles", "mri_float_axis_0", "mri_constant",
         "ct_2d", "mri_2d"]


def _assert_same_as_plain(image, network, task, kwargs):
    from reference_restore import plain_restore

    fast = restore_volume(image, network, task, device="cpu", **kwargs)
    plain = plain_restore(image, network, task, batch_size=kwargs.get("batch_size", 1), axis=kwargs.get("axis"))
    assert fast.shape == plain.shape and fast.dtype == torch.float32
    scale = float(plain.abs().max()) or 1.0
    assert float((fast.as_tensor() - plain).abs().max()) <= 1e-6 * scale
    return fast, plain


@pytest.mark.parametrize("pipelined", [False, True], ids=["direct", "pipelined"])
@pytest.mark.parametrize("case", CASES)
def test_fast_paths_give_the_plain_path_values(case, pipelined, monkeypatch):
    from monai_tat.inference.engine import slice_loop as engine

    if pipelined:  # the CUDA ordering (double-buffered blocks, progress when a block is back) on CPU
        monkeypatch.setattr(engine, "use_pipeline", lambda device: True)
    image, task, kwargs = _case(case)
    before = torch.as_tensor(np.asarray(image[0] if isinstance(image, tuple) else image)).clone()
    for network in (Smoother(), _Scale()):
        fast, plain = _assert_same_as_plain(image, network, task, kwargs)
    after = torch.as_tensor(np.asarray(image[0] if isinstance(image, tuple) else image))
    assert torch.equal(before, after)  # the input is never written (staging reuses its own copy)
    if task != "mri":  # kept voxels are exactly the input's, restored ones are not
        from monai_tat.tasks import get_task

        source = before.float()
        lower, upper = get_task(task).model_range
        in_model_range = (source - lower) / (upper - lower)  # outside [0, 1] there: kept
        outside = (in_model_range < 0) | (in_model_range > 1)
        assert torch.equal(fast.as_tensor()[outside], source[outside])
        assert not torch.equal(fast.as_tensor()[~outside], source[~outside])


def test_tiny_tat_fast_path_equals_plain_path(tiny_tat):
    image, task, kwargs = _case("ct_axial_c_order")
    _assert_same_as_plain(image[:24, :20, :3], tiny_tat, task, {"batch_size": 2})


def test_pipelined_progress_cancel_and_out_of_memory(monkeypatch):
    from monai_tat.inference.engine import slice_loop as engine

    monkeypatch.setattr(engine, "use_pipeline", lambda device: True)
    calls: list[tuple[int, int]] = []
    smoother = Smoother()
    restore_volume(_ct_volume(shape=(6, 6, 7)), smoother, "ct", device="cpu", batch_size=3,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 7), (3, 7), (6, 7), (7, 7)] and len(smoother.calls) == 3
    with pytest.raises(RestorationCancelled):
        restore_volume(_ct_volume(shape=(6, 6, 6)), Smoother(), "ct", device="cpu", batch_size=2,
                       cancel=lambda: len(calls) > 4, progress=lambda done, total: calls.append((done, total)))
    net = _RunsOutOfMemory(limit=2)
    restored = restore_volume(_ct_volume(shape=(6, 6, 7)), net, "ct", device="cpu", batch_size=8)
    expected = restore_volume(_ct_volume(shape=(6, 6, 7)), Smoother(), "ct", device="cpu", batch_size=1)
    np.testing.assert_allclose(restored.numpy(), expected.numpy(), atol=1e-3)
    assert net.calls[:2] == [("oom", 7), ("oom", 3)]


def test_network_producing_nan_is_reported():
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    with pytest.raises(UserInputError, match="NaN or infinite"):
        restore_volume(_ct_volume(), Broken(), "ct", device="cpu")


def test_thread_count_is_the_callers_for_the_network_and_restored_after():
    seen: list[int] = []

    class Records(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    threads = torch.get_num_threads()
    restore_volume(_ct_volume(), Records(), "ct", device="cpu", batch_size=2)
    assert seen and set(seen) == {threads} and torch.get_num_threads() == threads
    with pytest.raises(RestorationCancelled):
        restore_volume(_ct_volume(), Records(), "ct", device="cpu", cancel=lambda: True)
    assert torch.get_num_threads() == threads


def test_exact_percentiles_equal_numpy_on_float64():
    from monai_tat.transforms.model_mapping import exact_percentiles as _exact_percentiles

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 2000))
        kind = trial % 4
        values = (rng.gamma(2, 300, n) if kind == 0 else rng.normal(0, 1e4, n) if kind == 1
                  else np.round(rng.uniform(0, 50, n)) if kind == 2 else np.full(n, 3.25)).astype(np.float32)
        expected = np.percentile(values.astype(np.float64), (0.5, 99.5))
        assert _exact_percentiles(torch.from_numpy(values), (0.5, 99.5)) == tuple(expected)
    volume = torch.from_numpy(np.asfortranarray(rng.normal(0, 1, (9, 8, 7)).astype(np.float32)))
    assert _exact_percentiles(volume, (2.0, 98.0)) == tuple(np.percentile(volume.numpy().astype(np.float64), (2, 98)))


@pytest.mark.parametrize("src_order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])
def test_transpose_copy_between_any_memory_orders(src_order):
    from monai_tat.inference.engine.layout import transpose_copy as _transpose_copy

    shape = (70, 64, 3)  # large enough for torch's blocked 2D transpose path
    values = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape)
    src = values.permute(src_order).contiguous().permute(np.argsort(src_order).tolist())
    for dst_order in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        dst = torch.empty([shape[d] for d in dst_order]).permute(np.argsort(dst_order).tolist())
        _transpose_copy(dst, src)
        assert torch.equal(dst, values)


def test_batch_size_for_memory():
    from monai_tat.inference.devices import batch_size_for_memory

    gib = 2**30
    assert batch_size_for_memory(gib, 8 * gib) == 6  # 80 % of 8 GiB at 1 GiB a slice
    assert batch_size_for_memory(gib, gib // 2) == 1  # never below one: the OOM retry reports it
    assert batch_size_for_memory(1, 8 * gib) == 32 and batch_size_for_memory(0, gib, cap=4) == 4


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _small_tat() -> torch.nn.Module:
    """A seeded tiny TAT: convolutions, matrix products and attention, so bf16 really changes the output."""
    from monai_tat.networks import build_network

    torch.manual_seed(0)
    return build_network("TAT", dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1).eval()


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("case", ["ct_axial_c_order", "pet_hot_spots", "mri_percentiles", "ct_2d"])
@pytest.mark.usefixtures("_no_tf32")
def test_cuda_pipeline_equals_plain_path(case):
    """The double-buffered CUDA pipeline against the plain loop, with a real network. TF32 is off
    here (float32 products exactly as on the CPU); batches of different sizes may still pick other
    cuDNN algorithms, hence 1e-5 of the largest value in float32 and 1e-3 in bf16."""
    from reference_restore import plain_restore

    image, task, kwargs = _case(case)
    network = _small_tat()
    calls: list[tuple[int, int]] = []
    for batch_size in (kwargs.get("batch_size"), None):  # given, and measured from free memory
        fast = restore_volume(image, network, task, device="cuda", batch_size=batch_size,
                              progress=lambda done, total: calls.append((done, total)))
        plain = plain_restore(image, network, task, device="cuda", batch_size=kwargs.get("batch_size", 1),
                              axis=kwargs.get("axis"))
        assert float((fast.as_tensor() - plain).abs().max()) <= 1e-5 * float(plain.abs().max())
        assert calls[-1][0] == calls[-1][1] and [d for d, t in calls if d == t] == [calls[-1][1]]
        calls.clear()
    batch = kwargs.get("batch_size", 2)
    bf16 = restore_volume(image, network, task, device="cuda", amp="bf16", batch_size=batch)
    plain_bf16 = plain_restore(image, network, task, device="cuda", amp="bf16", batch_size=batch, axis=kwargs.get("axis"))
    assert float((bf16.as_tensor() - plain_bf16).abs().max()) <= 1e-3 * float(plain_bf16.abs().max())
    assert not torch.equal(bf16.as_tensor(), fast.as_tensor())  # bf16 really ran the products in bf16


@pytest.fixture
def _no_tf32(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
@pytest.mark.cuda
@pytest.mark.usefixtures("_no_tf32")
def test_second_gpu_gives_the_first_gpus_result():
    """``cuda:1`` while the current device is ``cuda:0`` (the Slicer module's case): the completion
    event must wait for cuda:1's work, or the host reads unwritten output."""
    image, task, kwargs = _case("ct_axial_c_order")
    network = _small_tat()
    first = restore_volume(image, network, task, device="cuda:0", batch_size=2)
    assert torch.cuda.current_device() == 0
    second = restore_volume(image, network, task, device="cuda:1", batch_size=2)
    assert float((first.as_tensor() - second.as_tensor()).abs().max()) <= 1e-5 * float(first.abs().max())


@pytest.mark.cuda
@cuda_only
def test_mri_given_as_a_cuda_tensor_with_kspace_consistency():
    """The Python API accepts a CUDA tensor: staged on the host, the k-space step included."""
    image, _task, _kwargs = _case("mri_percentiles")
    volume = image.as_tensor().float()
    on_cpu = restore_volume(volume, Smoother(), "mri", device="cpu", kspace_consistency="on")
    on_gpu = restore_volume(volume.cuda(), Smoother(), "mri", device="cuda", kspace_consistency="on")
    assert on_gpu.device.type == "cpu"
    assert on_gpu.meta["restoration"]["kspace_consistency"]["applied"]
    assert float((on_gpu.as_tensor() - on_cpu.as_tensor()).abs().max()) <= 1e-4 * float(on_cpu.abs().max())
