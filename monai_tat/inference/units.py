"""Check that an image is in its task's units before it is restored; convert it when told how.

Each task of the registry (:mod:`monai_tat.tasks`) states its units (CT: HU, PET: SUV, MRI: any
scale) and the signature of the other units its images often arrive in (CT stored values, PET
activity concentration in Bq/mL), with the one setting that converts them:

- ``suv_factor`` (PET): SUV = Bq/mL x factor (from the DICOM headers, or the patient weight and
  injected dose: :func:`monai_tat.io.suv.suv_factor_from_values`);
- ``rescale_intercept`` (CT): HU = stored value + intercept (usually -1024).

:func:`input_units` runs before every restoration (:func:`monai_tat.inference.restore_volume`):
an image that matches a signature without its conversion, or a conversion given for an image that
does not match it, is refused with one :class:`~monai_tat.errors.UserInputError` naming what was
found and what to do. A converted image is restored in the task's units and given back in its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASK_SPECS, ForeignUnits, TaskSpec, ValueBand, get_task

__all__ = ["InputUnits", "input_units", "foreign_units_of", "task_for_conversion", "task_given_conversion", "CONVERSIONS",
           "band_holds"]

#: The conversion settings and how each maps input values ``x`` to the task's units.
CONVERSIONS = {"suv_factor": "x * factor", "rescale_intercept": "x + intercept"}
_MAX_SAMPLES = 1_000_000  # a regular subsample is plenty for shares of voxels in value bands


@dataclass(frozen=True)
class InputUnits:
    """How an image's values relate to its task's units: ``task_value = value * scale + offset``.

    Attributes:
        task: the task name.
        units: the units of the image as given (the task's, or a foreign name such as ``"Bq/mL"``).
        task_units: the task's units (``"HU"``, ``"SUV"``, ``"a.u."``).
        scale, offset: the conversion to the task's units (1 and 0 when none).
        conversion: the setting that gave the conversion (``"suv_factor"``), or None.
    """

    task: str
    units: str
    task_units: str
    scale: float = 1.0
    offset: float = 0.0
    conversion: str | None = None

    @property
    def converts(self) -> bool:
        return self.conversion is not None

    def to_task_units(self, values: torch.Tensor) -> torch.Tensor:
        """A new tensor ``values * scale + offset`` (float32, ``values``' memory order); ``values`` is kept."""
        out = values * self.scale if self.scale != 1.0 else values.clone()
        return out.add_(self.offset) if self.offset != 0.0 else out

    def from_task_units_(self, values: torch.Tensor) -> torch.Tensor:
        """In place: task units back to the image's units (the inverse of :meth:`to_task_units`)."""
        if self.offset != 0.0:
            values.sub_(self.offset)
        if self.scale != 1.0:
            values.div_(self.scale)
        return values

    def record(self) -> dict[str, object]:
        """What ``meta["restoration"]["units"]`` keeps: the units in and out and the conversion."""
        out: dict[str, object] = {"image": self.units, "model": self.task_units}
        if self.conversion == "suv_factor":
            out["suv_factor"] = self.scale
        elif self.conversion == "rescale_intercept":
            out["rescale_intercept"] = self.offset
        return out


def task_for_conversion(suv_factor: float | None, rescale_intercept: float | None) -> str | None:
    """The task that a given conversion belongs to (``suv_factor`` -> pet), or None when none is given.

    Raises:
        UserInputError: conversions of two different tasks were given together.
    """
    given = [name for name, value in (("suv_factor", suv_factor), ("rescale_intercept", rescale_intercept))
             if value is not None]
    tasks = {spec.name for spec in TASK_SPECS.values() for foreign in spec.foreign_units
             if foreign.conversion in given}
    if len(tasks) > 1:
        raise UserInputError(f"{' and '.join(given)} belong to different tasks ({', '.join(sorted(tasks))}); "
                             "give only the one for this image", setting=given[-1])
    return tasks.pop() if tasks else None


def task_given_conversion(task: str | None, suv_factor: float | None, rescale_intercept: float | None) -> str | None:
    """``task``, or when it is automatic (None / "auto") the task a given conversion implies."""
    implied = task_for_conversion(suv_factor, rescale_intercept)
    if implied is not None and (task is None or str(task).lower() == "auto"):
        return implied
    return task


def input_units(task: str, values: torch.Tensor, *, suv_factor: float | None = None,
                rescale_intercept: float | None = None) -> InputUnits:
    """Check ``values`` (an image in its task's units, or in foreign units with their conversion).

    Args:
        task: a task name of the registry.
        values: the image, any shape, finite values.
        suv_factor: PET in Bq/mL: SUV = value x ``suv_factor``.
        rescale_intercept: CT in stored values: HU = value + ``rescale_intercept``.

    Returns:
        How to take the image to the task's units and back.

    Raises:
        UserInputError: the image matches a foreign signature of its task and no conversion was
            given; a conversion was given for another task, or for an image that does not match
            its signature (it is in the task's units already); a conversion that is not a finite
            number (a factor that is not positive).
    """
    spec = get_task(task)
    given = {name: value for name, value in (("suv_factor", suv_factor), ("rescale_intercept", rescale_intercept))
             if value is not None}
    for name, value in given.items():
        number = float(value)
        if not math.isfinite(number) or (name == "suv_factor" and number <= 0.0):
            kind = "a positive number" if name == "suv_factor" else "a finite number"
            raise UserInputError(f"{_words(name)} must be {kind}, got {value!r}", setting=name)
        if not any(foreign.conversion == name for foreign in spec.foreign_units):
            raise UserInputError(f"{_a(name)} converts {_task_of(name)} images; this image is restored as "
                                 f"{spec.name}, whose units are {spec.units}: leave it out", setting=name)
    found = foreign_units_of(spec, values)
    if not given:
        if found is not None:
            foreign, details = found
            raise UserInputError(f"the {spec.name.upper()} image is not in {spec.units}: {foreign.found} "
                                 f"({details}); {foreign.fix}", setting=foreign.conversion)
        return InputUnits(spec.name, spec.units, spec.units)
    name, value = next(iter(given.items()))
    foreign = next(f for f in spec.foreign_units if f.conversion == name)
    if found is None or found[0] is not foreign:
        raise UserInputError(
            f"{_a(name)} was given, but the image does not look like {foreign.name} ({_percentiles(values)}); "
            f"it seems to be in {spec.units} already ({spec.units_expected}): leave the {_words(name)} out",
            setting=name,
        )
    if name == "suv_factor":
        return InputUnits(spec.name, foreign.name, spec.units, scale=float(value), conversion=name)
    return InputUnits(spec.name, foreign.name, spec.units, offset=float(value), conversion=name)


def foreign_units_of(spec: TaskSpec, values: torch.Tensor) -> tuple[ForeignUnits, str] | None:
    """The first foreign units of ``spec`` whose signature ``values`` match, with what was measured."""
    if not spec.foreign_units:
        return None
    sample = _sample(values)
    for foreign in spec.foreign_units:
        shares = [_share(sample, band) for band in foreign.signature]
        if all(_holds(band, share) for band, share in zip(foreign.signature, shares)):
            bands = ", ".join(f"{100 * share:.3g} % of voxels {_band_text(band)}"
                              for band, share in zip(foreign.signature, shares))
            return foreign, f"{bands}; {_percentiles(values, sample)}"
    return None


def _sample(values: torch.Tensor) -> np.ndarray:
    """A regular subsample (at most about a million voxels) as a float64 array, without a full copy."""
    data = values.detach()
    if data.numel() > _MAX_SAMPLES and data.ndim > 0:
        step = math.ceil((data.numel() / _MAX_SAMPLES) ** (1.0 / data.ndim))
        data = data[(slice(None, None, step),) * data.ndim]
    return data.cpu().numpy().astype(np.float64).ravel()


def _share(sample: np.ndarray, band: ValueBand) -> float:
    inside = np.ones(sample.shape, dtype=bool)
    if band.low is not None:
        inside &= sample >= band.low
    if band.high is not None:
        inside &= sample <= band.high
    return float(inside.mean()) if sample.size else 0.0


def band_holds(sample: np.ndarray, band: ValueBand) -> bool:
    """Whether the share of ``sample``'s values in ``band`` meets the band's fraction limits."""
    return _holds(band, _share(sample, band))


def _holds(band: ValueBand, share: float) -> bool:
    if band.min_fraction is not None and share < band.min_fraction:
        return False
    return band.max_fraction is None or share <= band.max_fraction


def _band_text(band: ValueBand) -> str:
    if band.low is None:
        return f"below {band.high:g}"
    if band.high is None:
        return f"above {band.low:g}"
    return f"in [{band.low:g}, {band.high:g}]"


def _percentiles(values: torch.Tensor, sample: np.ndarray | None = None) -> str:
    sample = _sample(values) if sample is None else sample
    low, median, high = np.percentile(sample, (1, 50, 99)) if sample.size else (math.nan,) * 3
    return f"1st / 50th / 99th percentile {low:.4g} / {median:.4g} / {high:.4g}"


def _words(setting: str) -> str:
    return setting.replace("_", " ").replace("suv", "SUV")


def _a(setting: str) -> str:
    words = _words(setting)
    return f"{'an' if words[0] in 'aeiouS' else 'a'} {words}"  # "an SUV factor", "a rescale intercept"


def _task_of(setting: str) -> str:
    tasks = [spec.name.upper() for spec in TASK_SPECS.values() for f in spec.foreign_units if f.conversion == setting]
    return " / ".join(tasks) or "no"
