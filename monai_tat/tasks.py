"""The one registry of restoration tasks: every number and name that differs between CT, PET and MRI.

Everyone reads it: the intensity transforms (model range), the simulators, the inference engine,
the metrics (evaluation window), DICOM reading (modality codes, units), the paired-data builder
(slice selection), the CLI, the demo and the Slicer module (display windows). Adding a task (say
sparse-view CT) means one new :class:`TaskSpec` here plus its simulator class in
``monai_tat.transforms``.

This module holds plain data only (numbers and names, no transforms), so that every layer of the
package, the lowest included, can import it.

Example::

    from monai_tat.tasks import get_task
    ct = get_task("ct")
    ct.eval_window        # (-160.0, 240.0) HU, the papers' abdomen window W400 / L40
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Optional

from monai_tat.errors import UserInputError

__all__ = ["TaskSpec", "ValueBand", "ForeignUnits", "IntensitySignature", "TASK_SPECS", "TASKS", "get_task", "check_task", "task_for_modality", "task_for_units"]


@dataclass(frozen=True)
class ValueBand:
    """A share of an image's voxels in the value band ``[low, high]`` (either end open when None).

    The band holds when that share is at least ``min_fraction`` (or at most ``max_fraction``).
    """

    low: Optional[float]
    high: Optional[float]
    min_fraction: Optional[float] = None
    max_fraction: Optional[float] = None


@dataclass(frozen=True)
class ForeignUnits:
    """How an image in other units than its task's shows itself, and how it is converted.

    Attributes:
        name: the other units, as a user knows them (``"Bq/mL"``, ``"stored values"``).
        signature: value bands that all hold for such an image and (practically) never for an
            image in the task's units.
        found: what the signature means, for the error message (``"air near 0 instead of -1000"``).
        conversion: the setting that converts such an image to the task's units (``"suv_factor"``:
            task units = value x factor; ``"rescale_intercept"``: task units = value + intercept).
        fix: what to do, in plain words (no command-line flags).
    """

    name: str
    signature: tuple[ValueBand, ...]
    found: str
    conversion: str
    fix: str


@dataclass(frozen=True)
class IntensitySignature:
    """How an image of a task looks by its values alone, for telling the task of a file without DICOM
    modality or units (:func:`monai_tat.inference.task_detection.infer_task`).

    All given conditions must hold; the registry's signatures exclude each other (CT needs negative
    values, MRI integer values, PET non-integer values).

    Attributes:
        bands: value bands that all hold (for example air below -500 HU in at least 1 % of voxels).
        nonnegative: no value below 0.
        integer_valued: every value within 1e-3 of an integer (True), or not (False); None: either.
        max_range: the largest value lies in ``[low, high]`` (either end open when None).
        rule: the rule in words, for docs and messages.
    """

    rule: str
    bands: tuple[ValueBand, ...] = ()
    nonnegative: bool = False
    integer_valued: Optional[bool] = None
    max_range: tuple[Optional[float], Optional[float]] = (None, None)


@dataclass(frozen=True)
class TaskSpec:
    """What the package needs to know about one restoration task.

    Attributes:
        name: short key used everywhere (``"ct"``); datalists carry it in their ``task`` field.
        title: human-readable name of the restoration.
        units: physical units of the images (``"HU"``, ``"SUV"``, ``"a.u."``).
        units_expected: what images in ``units`` look like, in words (for messages and docs).
        foreign_units: how input in other units is recognised (checked before every restoration)
            and converted; empty when any scale is fine (MRI).
        modality_codes: DICOM Modality (0008,0060) values that mean this task; the first is the one
            the package writes.
        model_range: physical values mapped linearly to the networks' [0, 1] input range, or None
            when the range comes from the image's percentiles (MRI). A fixed range also means
            that input voxels outside it are clipped for the network and kept in the output.
        model_percentiles: percentiles mapped to [0, 1] when ``model_range`` is None.
        percentiles_per_slice: the ``model_percentiles`` are taken per 2D slice (along the axis
            the network slices), so a slice's result does not depend on the other slices of its
            file; else over the whole image (see :mod:`monai_tat.transforms.model_mapping`).
        eval_window: the papers' evaluation window in physical units (prediction and label are
            clipped to it before PSNR / SSIM / RMSE).
        display_window: a fixed display window in physical units (previews, Slicer); None means
            the image's own 0.5 / 99.5 percentiles.
        simulator: name of the degradation simulator class in ``monai_tat.transforms``.
        simulator_defaults: the papers' degradation strength (keyword arguments of the simulator).
        simulator_is_random: whether the simulator draws noise (takes a ``seed``).
        central_slices: paired-data builder keeps only this many central slices (papers: MRI 100).
        air_threshold: paired-data builder drops leading / trailing slices where fewer than 1 % of
            the voxels exceed this value (papers: PET air-only slices, SUV).
        signature: how an image of this task is recognised by its values when nothing else tells.
        dicom_conversion: what reading a DICOM series of this task converts its stored values with
            (``"suv_factor"``: PET activity concentration to SUV from the headers), or None.
        kspace_consistency: whether the restored image may be made consistent with the measured
            k-space band of its input (MRI super-resolution); the truncation factor is the
            simulator's ``factor``.
    """

    name: str
    title: str
    units: str
    modality_codes: tuple[str, ...]
    model_range: Optional[tuple[float, float]]
    eval_window: tuple[float, float]
    display_window: Optional[tuple[float, float]]
    simulator: str
    simulator_defaults: Mapping[str, Any] = field(default_factory=dict)
    simulator_is_random: bool = True
    model_percentiles: tuple[float, float] = (0.5, 99.5)
    percentiles_per_slice: bool = False
    central_slices: Optional[int] = None
    air_threshold: Optional[float] = None
    units_expected: str = "any scale"
    foreign_units: tuple[ForeignUnits, ...] = ()
    signature: Optional[IntensitySignature] = None
    dicom_conversion: Optional[str] = None
    kspace_consistency: bool = False

    @property
    def fixed_range(self) -> bool:
        """True when the model range is a fixed physical window (input clipped, out-of-range voxels kept)."""
        return self.model_range is not None

    @property
    def kspace_factor(self) -> Optional[float]:
        """The k-space truncation factor the consistency step assumes by default, or None when the
        task has no k-space consistency."""
        return float(self.simulator_defaults.get("factor", 4.0)) if self.kspace_consistency else None

    @property
    def modality(self) -> str:
        """The DICOM Modality value the package writes for this task."""
        return self.modality_codes[0]


_SPECS = (
    TaskSpec(
        name="ct",
        title="low-dose CT denoising",
        units="HU",
        modality_codes=("CT",),
        model_range=(-1024.0, 3072.0),
        eval_window=(-160.0, 240.0),
        display_window=(-160.0, 240.0),
        simulator="LowDoseCT",
        simulator_defaults=MappingProxyType({"dose_fraction": 0.25}),
        units_expected="HU: air near -1000, fat near -100, water 0",
        signature=IntensitySignature(
            rule="at least 1 % of the voxels below -500 (air at about -1000 HU)",
            bands=(ValueBand(None, -500.0, min_fraction=0.01),),
        ),
        foreign_units=(
            ForeignUnits(
                name="stored values",
                # No air, lung or fat (which every body CT in HU has between -1500 and -200; padding
                # below -1500 aside) and soft tissue / water near +1000: stored = HU + 1024.
                signature=(ValueBand(-1500.0, -200.0, max_fraction=0.001), ValueBand(800.0, 1300.0, min_fraction=0.05)),
                found="no air or fat below -200 and soft tissue near +1000, as in stored values (air near 0)",
                conversion="rescale_intercept",
                fix="give the rescale intercept (0028,1052) of the series (usually -1024) to convert it to HU, "
                "or read the CT from its DICOM series",
            ),
        ),
    ),
    TaskSpec(
        name="pet",
        title="low-count PET synthesis",
        units="SUV",
        modality_codes=("PT", "PET"),
        model_range=(0.0, 20.0),
        eval_window=(0.0, 20.0),
        display_window=(0.0, 10.0),
        simulator="LowCountPET",
        simulator_defaults=MappingProxyType({"dose_reduction_factor": 12.0}),
        air_threshold=0.1,
        units_expected="SUV: body values mostly under 30",
        signature=IntensitySignature(
            rule="no negative values, not integer-valued, maximum between 2 and 100 (SUV)",
            nonnegative=True, integer_valued=False, max_range=(2.0, 100.0),
        ),
        dicom_conversion="suv_factor",
        foreign_units=(
            ForeignUnits(
                name="Bq/mL",
                # Over 1 % of the voxels above 50: in SUV only a bladder or a hot tumour reaches 50,
                # in activity concentration a normal body background (~5000 Bq/mL) lies far above.
                signature=(ValueBand(50.0, None, min_fraction=0.01),),
                found="activity concentration (Bq/mL) rather than SUV",
                conversion="suv_factor",
                fix="give its SUV factor (or the patient weight and injected dose, with the injection and scan "
                "times unless the image is decay-corrected to the injection), or read the PET from its DICOM "
                "series, which is converted to SUV from its headers",
            ),
        ),
    ),
    TaskSpec(
        name="mri",
        title="MRI 4x super-resolution",
        units="a.u.",
        modality_codes=("MR", "MRI"),
        model_range=None,
        eval_window=(0.0, 4095.0),
        display_window=None,
        simulator="KSpaceTruncation",
        simulator_defaults=MappingProxyType({"factor": 4.0}),
        simulator_is_random=False,
        percentiles_per_slice=True,
        central_slices=100,
        signature=IntensitySignature(
            rule="no negative values, integer-valued, maximum at least 100 (scanner signal units)",
            nonnegative=True, integer_valued=True, max_range=(100.0, None),
        ),
        kspace_consistency=True,
    ),
)

#: Every task by name, in the papers' order.
TASK_SPECS: Mapping[str, TaskSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
#: The task names: ``("ct", "pet", "mri")``.
TASKS: tuple[str, ...] = tuple(TASK_SPECS)


def get_task(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task`` (case-insensitive); :class:`UserInputError` for an unknown name."""
    spec = TASK_SPECS.get(str(task).lower())
    if spec is None:
        raise UserInputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}.", setting="task")
    return spec


def check_task(task: str) -> str:
    """``task`` lower-cased, or :class:`UserInputError` if it is not one of :data:`TASKS`."""
    return get_task(task).name


def task_for_modality(modality: str | None) -> str | None:
    """The task of a DICOM Modality value (``"CT"``, ``"PT"``, ``"MR"`` ...), or None when no task has it."""
    key = str(modality or "").strip().upper()
    for spec in _SPECS:
        if key in spec.modality_codes:
            return spec.name
    return None


def task_for_units(units: str | None) -> str | None:
    """The task whose images are in ``units`` (``"HU"`` -> ct, ``"SUV"`` -> pet), or None."""
    key = str(units or "").strip().upper()
    for spec in _SPECS:
        if spec.fixed_range and key == spec.units.upper():
            return spec.name
    return None
