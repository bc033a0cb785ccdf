"""An MRI slice restores the same alone, in a slab and in its whole volume (per-slice intensity mapping).

The shipped demo TAT weights, a 64 x 64 x 8 MRI phantom truncated 4x in k-space, restored with
k-space consistency on (what ``monai-tat restore`` applies to a truncated MRI; forced here because
the band of so small a phantom is not detected). Tolerance: 0.05 dB of PSNR against the
reference at most, and voxel values equal up to float32 rounding of the mapping (1e-3 of the
slice's intensity range; per-slice bounds make the network input identical).
"""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_tat.demo.samples import make_sample
from monai_tat.inference import load_model, restore_volume
from monai_tat.metrics.image_quality import psnr

PSNR_TOLERANCE_DB = 0.05
SLICE = 4


@pytest.fixture(scope="module")
def mri_sample():
    torch.manual_seed(0)
    return make_sample("mri", size=64, slices=8, seed=11)


@pytest.fixture(scope="module")
def tat():
    return load_model("tat", "cpu")


def _part(volume: MetaTensor, start: int, stop: int) -> MetaTensor:
    """Slices ``[start, stop)`` along the axial (last) axis as their own volume, same affine."""
    return MetaTensor(volume.as_tensor()[:, :, start:stop].clone(), affine=volume.affine.clone(), meta=dict(volume.meta))


def test_mri_slice_alone_in_a_slab_and_in_the_volume_restores_the_same(mri_sample, tat) -> None:
    low, reference = mri_sample.low_quality, mri_sample.reference
    whole = restore_volume(low, tat, task="mri", device="cpu", kspace_consistency="on")
    slab = restore_volume(_part(low, SLICE - 2, SLICE + 2), tat, task="mri", device="cpu", kspace_consistency="on")
    alone = restore_volume(_part(low, SLICE, SLICE + 1), tat, task="mri", device="cpu", kspace_consistency="on")
    for result in (whole, slab, alone):
        assert result.meta["restoration"]["kspace_consistency"]["applied"]
        assert result.meta["restoration"]["intensity"]["bounds"] == "percentiles per slice"

    outputs = {"whole": whole.as_tensor()[:, :, SLICE], "slab": slab.as_tensor()[:, :, 2], "alone": alone.as_tensor()[:, :, 0]}
    target = reference.as_tensor()[:, :, SLICE]
    value_range = float(target.max() - target.min())
    scores = {name: psnr(out.numpy(), target.numpy(), "mri") for name, out in outputs.items()}
    changed = float((outputs["whole"] - low.as_tensor()[:, :, SLICE]).abs().max())
    assert changed > 1e-2 * value_range, "the network left the slice unchanged: the comparison would prove nothing"
    for name in ("slab", "alone"):
        difference = float((outputs[name] - outputs["whole"]).abs().max())
        assert difference <= 1e-3 * value_range, f"{name}: max |diff| {difference:.4g} from the whole-volume result"
        assert abs(scores[name] - scores["whole"]) <= PSNR_TOLERANCE_DB, scores


def test_the_whole_volume_percentiles_would_depend_on_the_slab(mri_sample) -> None:
    """The test above can fail: per-volume bounds of the slab and of the volume differ here."""
    from monai_tat.transforms.model_mapping import percentile_bounds, slice_percentile_bounds

    low = mri_sample.low_quality.as_tensor()
    per_volume = [percentile_bounds(part, (0.5, 99.5)).scalars() for part in (low, low[:, :, SLICE:SLICE + 1])]
    assert abs(per_volume[0][1] - per_volume[1][1]) > 1e-3 * per_volume[0][1]
    whole = slice_percentile_bounds(low, (0.5, 99.5), axis=2)
    alone = slice_percentile_bounds(low[:, :, SLICE:SLICE + 1], (0.5, 99.5), axis=2)
    assert (whole.lower[SLICE], whole.upper[SLICE]) == (alone.lower[0], alone.upper[0])
