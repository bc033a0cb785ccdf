"""Demo samples: one phantom volume per task made in code, and a real CT slice that pydicom ships,
each with its simulated low-quality partner.

Used by ``monai-tat demo``; nothing is downloaded and no image file is shipped with monai-tat.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.demo.phantoms import phantom_volume
from monai_tat.tasks import TASKS, get_task

__all__ = ["DEMO_SIMULATION", "Sample", "sample_shape", "make_sample", "real_ct_sample"]

#: Region, in-plane pixel size (mm), slice spacing (mm) and degradation of each task's sample.
DEMO_SIMULATION: dict[str, dict] = {
    # quarter dose; the fluence (at the default 192 matrix, scaled with the matrix area, see
    # make_sample) is inside the range the demo weights were trained on
    "ct": {"region": "abdomen", "pixel_mm": 1.2, "slice_mm": 3.0,
           "degradation": {"dose_fraction": 0.25, "incident_photons_per_mm2": 6.0e4}},
    # dose reduction factor 12 as the papers (list-mode decimation)
    "pet": {"region": "thorax", "pixel_mm": 3.5, "slice_mm": 3.5,
            "degradation": {"dose_reduction_factor": 12.0}},
    # 4x k-space truncation per in-plane axis as the papers' IXI preparation
    "mri": {"region": "head", "pixel_mm": 1.0, "slice_mm": 3.0, "degradation": {"factor": 4.0}},
}


@dataclass
class Sample:
    """A demo case: ``reference`` and ``low_quality`` volumes ``(H, W, D)`` in physical units with a RAS affine."""

    task: str
    reference: MetaTensor
    low_quality: MetaTensor
    description: str


def sample_shape(task: str, size: int, slices: int) -> tuple[int, int, int]:
    """Volume shape of ``task`` for an in-plane ``size`` (PET uses 2/3 of it: coarser pixels), multiple of 8."""
    n = size * 2 // 3 if task == "pet" else size
    return max(32, n // 8 * 8), max(32, n // 8 * 8), max(1, slices)


def _affine(pixel_mm: float, slice_mm: float) -> torch.Tensor:
    """RAS affine of a DICOM-like (LPS) voxel order: i to the patient's left, j posterior, k superior."""
    return torch.diag(torch.tensor([-pixel_mm, -pixel_mm, slice_mm, 1.0], dtype=torch.float64))


def make_sample(task: str, size: int = 192, slices: int = 6, seed: int = 2024, ct_fluence_scale: float = 1.0) -> Sample:
    """Build the phantom volume of ``task`` and degrade it with the package's simulator.

    Args:
        task: "ct", "pet" or "mri".
        size: in-plane matrix of CT and MRI (PET: 2/3 of it).
        slices: number of axial slices (last axis).
        seed: phantom and noise seed.
        ct_fluence_scale: CT only: multiplies the simulated scanner's fluence (at the same quarter
            dose); above 1 the input is less noisy than the demo's (a higher-dose scan).
    """
    if not ct_fluence_scale > 0:
        raise ValueError(f"ct_fluence_scale must be > 0, got {ct_fluence_scale}")
    from monai_tat.transforms import simulator_for_task

    cfg = DEMO_SIMULATION[task]
    shape = sample_shape(task, size, slices)
    rng = np.random.default_rng([seed, TASKS.index(task)])
    z_extent = min(0.5, 0.06 * shape[2])
    # phantom rows run anterior -> posterior: they become the j axis (voxel order i, j, k)
    hq = phantom_volume(rng, task, shape, region=cfg["region"], pixel_mm=cfg["pixel_mm"], z_extent=z_extent)
    hq = np.ascontiguousarray(hq.transpose(1, 0, 2))
    affine = _affine(cfg["pixel_mm"], cfg["slice_mm"])
    kwargs = dict(cfg["degradation"])
    if task == "ct":
        kwargs["pixel_spacing_mm"] = cfg["pixel_mm"]
        # A smaller matrix is a smaller, less attenuating phantom with less noise; scale the
        # simulated scanner's fluence so the quarter-dose noise stays near clinical (~15-25 HU).
        kwargs["incident_photons_per_mm2"] *= (shape[0] / 192) ** 2 * ct_fluence_scale
    simulator = simulator_for_task(task, seed=seed, **kwargs)
    lq = np.asarray(simulator(hq[None]))[0]  # channel-first, slices along the last axis
    spec = get_task(task)

    def wrap(x: np.ndarray) -> MetaTensor:
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), affine=affine.clone(),
                          meta={"modality": spec.modality, "units": spec.units})

    params = ", ".join(f"{k}={v:g}" for k, v in cfg["degradation"].items())
    description = f"{cfg['region']} phantom {shape[0]}x{shape[1]}x{shape[2]}, {params}"
    return Sample(task, wrap(hq), wrap(lq), description)


def real_ct_sample(seed: int = 2024, dose_fraction: float = 0.25) -> Sample:
    """pydicom's ``CT_small.dcm`` (a real 128x128 CT slice in HU) and a simulated quarter-dose partner.

    The slice is the reference as scanned (its own dose, with its own noise, about 25 HU in soft
    tissue); :class:`LowDoseCT` adds the noise missing to reach ``dose_fraction`` of that dose, at
    the fluence whose simulated full-dose noise equals the slice's own
    (:func:`~monai_tat.transforms.estimate_scan_fluence`, as the training and held-out pairs of real
    scans are made).
    """
    from pydicom.data import get_testdata_file

    from monai_tat.io import read_volume
    from monai_tat.transforms import estimate_scan_fluence, simulator_for_task
    from monai_tat.transforms.simulators import geometry_arguments

    with tempfile.TemporaryDirectory(prefix="monai_tat_ct_small_") as folder:
        # Read from a folder of its own: a DICOM file's whole folder is scanned for its series, and
        # pydicom's test folder holds deliberately broken files that make GDCM print errors.
        source = get_testdata_file("CT_small.dcm")
        path = Path(folder) / "CT_small.dcm"
        shutil.copyfile(source, path)
        reference = read_volume(path)  # (128, 128, 1) MetaTensor in HU with the DICOM geometry
    reference.meta["filename_or_obj"] = str(source)
    spacing = [float(s) for s in reference.meta["spacing"]]
    geometry = geometry_arguments("ct", spacing[:2], spacing[2])
    hq = reference.numpy().astype(np.float32)
    fluence = estimate_scan_fluence(hq, geometry["pixel_spacing_mm"], geometry["slice_thickness_mm"])
    if fluence is None:  # cannot happen with this slice (mostly soft tissue); kept for a changed file
        raise RuntimeError("CT_small.dcm holds too little soft tissue to measure its noise")
    simulator = simulator_for_task(
        "ct", seed=seed, dose_fraction=dose_fraction, incident_photons_per_mm2=fluence,
        account_for_input_noise=True, **geometry,
    )
    hq = reference.numpy().astype(np.float32)
    lq = np.asarray(simulator(hq[None]))[0]
    low_quality = MetaTensor(torch.from_numpy(np.ascontiguousarray(lq)), affine=reference.affine.clone(),
                             meta={k: v for k, v in reference.meta.items() if k != "affine"})
    description = (f"real CT slice (pydicom CT_small.dcm) {hq.shape[0]}x{hq.shape[1]}, "
                   f"dose_fraction={dose_fraction:g}")
    return Sample("ct", reference, low_quality, description)
