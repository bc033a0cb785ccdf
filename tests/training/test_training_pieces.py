"""The MONAI pieces of the training stack: the task-dispatching intensity transform (and its
inverse through Invertd), the restoration inferer, the papers' PSNR as a MONAI metric, and the
trainer iteration that gives the objective the LQ input and the tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, Invertd
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference import restore_volume
from monai_tat.inference.inferer import RestorationInferer
from monai_tat.metrics import psnr
from monai_tat.metrics.monai_metrics import PaperPSNRMetric
from monai_tat.training import RestorationIteration
from monai_tat.transforms.task_intensity import TaskIntensityd


def _volume(low: float, high: float, seed: int = 0) -> MetaTensor:
    rng = np.random.default_rng(seed)
    data = rng.uniform(low, high, size=(1, 12, 10, 3)).astype(np.float32)
    return MetaTensor(torch.from_numpy(data), affine=torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0])))


def test_each_item_mapped_by_its_task_and_inverted_by_invertd() -> None:
    pre = Compose([TaskIntensityd("image")])
    ct = pre({"image": _volume(-1100, 3500), "task": "ct"})
    torch.testing.assert_close(ct["image"].as_tensor(), (_volume(-1100, 3500).as_tensor() + 1024) / 4096)
    mri = pre({"image": _volume(0, 900), "task": "MRI"})
    # per axial slice (the last axis of this affine), all channels together
    lo, hi = np.percentile(_volume(0, 900).numpy(), (0.5, 99.5), axis=(0, 1, 2), keepdims=True)
    lo, hi = lo.astype(np.float32), hi.astype(np.float32)
    torch.testing.assert_close(mri["image"].as_tensor(), (_volume(0, 900).as_tensor() - lo) / (hi - lo),
                               rtol=1e-4, atol=1e-5)
    restored = {**mri, "pred": mri["image"].clone() * 1.0}
    back = Invertd("pred", transform=pre, orig_keys="image")(restored)["pred"]
    torch.testing.assert_close(back.as_tensor(), _volume(0, 900).as_tensor(), rtol=1e-5, atol=1e-3)


def test_label_mapped_with_the_inputs_bounds_and_fixed_range_clipping() -> None:
    t = TaskIntensityd(["image", "label"], ref_key="image", clip="fixed_range")
    image, label = _volume(0, 400, seed=1), _volume(0, 800, seed=2)
    out = t({"image": image, "label": label, "task": "mri"})
    lo, hi = np.percentile(image.numpy(), (0.5, 99.5), axis=(0, 1, 2), keepdims=True)  # the input's, per slice
    lo, hi = lo.astype(np.float32), hi.astype(np.float32)
    torch.testing.assert_close(out["label"].as_tensor(), (label.as_tensor() - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    pet = t({"image": _volume(0, 30), "label": _volume(0, 30, seed=3), "task": "pet"})
    assert float(pet["image"].max()) == 1.0 and float(pet["label"].min()) >= 0.0
    with pytest.raises(UserInputError, match="task"):
        t({"image": image, "label": label})


def _batch(volume: MetaTensor) -> MetaTensor:
    """A collated batch of one channel-first item, as a DataLoader gives it."""
    item = volume[None]
    batch = MetaTensor(item[None], meta=item.meta, applied_operations=[item.applied_operations])
    batch.is_batch = True
    return batch


def test_inferer_restores_as_the_engine_does() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)).eval()
    volume = _volume(-1500, 3500)[0]  # CT with voxels outside the model range, in HU
    batch = _batch(volume)
    pred = RestorationInferer()(batch, net, task=["ct"])
    assert pred.shape == batch.shape and isinstance(pred, MetaTensor)
    expected = restore_volume(volume, net, "ct", device="cpu")
    assert torch.equal(pred[0, 0].as_tensor(), expected.as_tensor())  # the engine's result itself, in HU
    mapped = TaskIntensityd("image")({"image": volume[None], "task": "ct"})["image"]
    with pytest.raises(UserInputError, match="remove TaskIntensityd"):  # mapping it twice would be wrong
        RestorationInferer()(MetaTensor(mapped[None], meta=mapped.meta, applied_operations=[mapped.applied_operations]), net)


def test_inferer_passes_kspace_consistency_and_self_ensemble_to_the_engine() -> None:
    from monai_tat.demo.samples import make_sample

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)).eval()
    volume = make_sample("mri", size=64, slices=2, seed=5).low_quality  # a 4x k-space-truncated MRI
    batch = _batch(volume)
    for options in ({}, {"kspace_consistency": "off"}, {"self_ensemble": True, "kspace_consistency": "off"}):
        pred = RestorationInferer(**options)(batch, net, task=["mri"])
        expected = restore_volume(volume, net, "mri", device="cpu", **options)
        assert torch.equal(pred[0, 0].as_tensor(), expected.as_tensor())
    default = restore_volume(volume, net, "mri", device="cpu")
    assert default.meta["restoration"]["kspace_consistency"]["applied"]
    assert not torch.equal(default.as_tensor(), restore_volume(volume, net, "mri", device="cpu", kspace_consistency="off").as_tensor())
    with pytest.raises(UserInputError, match="'auto', 'on' or 'off'"):
        RestorationInferer(kspace_consistency="maybe")


def test_paper_psnr_metric_is_the_mean_over_slices() -> None:
    label = _volume(-200, 300, seed=4)
    pred = label + torch.randn_like(label) * 20
    metric = PaperPSNRMetric()
    metric(pred[None], label[None], task="ct")
    expected = np.mean([psnr(pred[0, :, :, k], label[0, :, :, k], "ct") for k in range(3)])
    assert float(metric.aggregate()) == pytest.approx(expected)
    with pytest.raises(UserInputError, match="task"):
        metric(pred[None], label[None])


def test_task_average_weighs_every_task_the_same() -> None:
    rng = np.random.default_rng(3)
    label = torch.from_numpy(rng.uniform(0.2, 0.8, size=(1, 1, 16, 16)).astype(np.float32)) * 4000 - 1024
    noisy = {s: label + torch.from_numpy(rng.normal(0, s, size=label.shape).astype(np.float32)) for s in (5, 20, 80)}
    # three CT images (one clean-ish, two noisy) and one MRI image
    items = [(noisy[5], "ct"), (noisy[80], "ct"), (noisy[80], "ct"), (noisy[20].clamp(min=0), "mri")]
    plain, balanced = PaperPSNRMetric(), PaperPSNRMetric(task_average=True)
    values = []
    for pred, task in items:
        target = label.clamp(min=0) if task == "mri" else label
        values.append(psnr(pred[0, 0].numpy(), target[0, 0].numpy(), task))
        for metric in (plain, balanced):
            metric(pred, target, task=task)
    ct_mean = np.mean(values[:3])
    assert float(plain.aggregate()) == pytest.approx(np.mean(values))
    assert float(balanced.aggregate()) == pytest.approx((ct_mean + values[3]) / 2)
    assert float(balanced.aggregate()) != pytest.approx(float(plain.aggregate()), abs=0.1)
    balanced.reset()
    balanced(noisy[5], label, task=["ct"])
    assert float(balanced.aggregate()) == pytest.approx(values[0])


def test_iteration_gives_the_objective_the_input_and_tasks() -> None:
    seen = {}

    def objective(pred, label, image=None, task=None):
        seen["image"], seen["task"] = image, task
        return (pred - label).abs().mean()

    net = nn.Conv2d(1, 1, 1)
    batch = {"image": torch.rand(2, 1, 4, 4), "label": torch.rand(2, 1, 4, 4), "task": ["ct", "mri"]}
    trainer = SupervisedTrainer(device="cpu", max_epochs=1, train_data_loader=[batch], network=net,
                                optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=objective,
                                iteration_update=RestorationIteration(), decollate=False)
    trainer.run()
    assert seen["task"] == ["ct", "mri"] and torch.equal(seen["image"], batch["image"])
    assert trainer.loss_function is objective and trainer.state.output["loss"] > 0
