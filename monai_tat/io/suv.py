"""SUV (body weight) scale factor from PET DICOM headers, following QIBA's vendor-neutral rules.

The factor multiplies the *rescaled* pixel values (after RescaleSlope/RescaleIntercept, which
SimpleITK and :func:`monai_tat.io.dicom_rescale.rescale_to_physical` apply) and gives SUVbw
in g/mL (1 g/mL tissue density assumed, as SUV always does):

- Units BQML: ``factor = weight_g / (dose_Bq * 2 ** (-decay_s / half_life_s))``, with ``decay_s``
  the time from injection to the scan reference time when DecayCorrection is START, and 0 when it
  is ADMIN (the scanner already decay-corrected to the administration time).
- Units CNTS (Philips): the private SUV scale factor (7053,1000); if only the Bq/mL-per-count
  factor (7053,1009) is present, that factor times the BQML factor.
- Units GML: the image already is SUVbw, factor 1.

Scan reference time: SeriesDate/SeriesTime, unless that is after the earliest
AcquisitionDate/AcquisitionTime of the series (a post-processed series); then the GE private scan
date-time (0009,100D) if present, else the earliest acquisition date-time.
Injection time: RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the series
date, moved to the previous day when it would fall after the scan (midnight crossing).
CorrectedImage must contain ATTN and DECY. Every missing or inconsistent tag raises
:class:`~monai_tat.errors.UserInputError` naming the tag; keyword overrides replace header values.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Union

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from monai_tat.errors import UserInputError

__all__ = ["suv_factor_from_dicom", "suv_factor_from_values", "DicomSource"]

DicomSource = Union[Dataset, str, os.PathLike, Sequence[Union[Dataset, str, os.PathLike]]]

_GE_CREATOR = "GEMS_PETD_01"
_PHILIPS_CREATOR = "Philips PET Private Group"
_MIN_PLAUSIBLE_DOSE_BQ = 1.0e4  # smaller values are MBq written where vendors write Bq


def suv_factor_from_dicom(
    source: DicomSource,
    *,
    weight_kg: float | None = None,
    injected_dose_bq: float | None = None,
    half_life_s: float | None = None,
    injection_time: datetime | None = None,
    scan_time: datetime | None = None,
) -> float:
    """Return the factor that turns Bq/mL (rescaled pixel values) into SUVbw.

    Args:
        source: a pydicom Dataset, a DICOM file, a directory holding one PET series, or a sequence of
            datasets/files of one series (all are used to find the earliest acquisition time).
        weight_kg: patient weight in kg instead of PatientWeight (0010,1030).
        injected_dose_bq: injected activity in Bq instead of RadionuclideTotalDose (0018,1074).
        half_life_s: half-life in s instead of RadionuclideHalfLife (0018,1075).
        injection_time: injection date-time instead of the RadiopharmaceuticalStart* tags.
        scan_time: decay reference date-time instead of the Series/Acquisition rules.

    Raises:
        UserInputError: a needed tag is missing, empty or inconsistent (the message names it and the
            override that replaces it).
    """
    datasets = _load_series(source)
    ds = datasets[0]

    corrected = [str(v).upper() for v in _as_list(_value(ds, "CorrectedImage"))]
    if not corrected:
        raise UserInputError(_missing("CorrectedImage (0028,0051)", "cannot tell whether ATTN and DECY were applied"))
    for flag in ("ATTN", "DECY"):
        if flag not in corrected:
            raise UserInputError(
                f"CorrectedImage (0028,0051) is {corrected} and lacks {flag}: the image is not "
                "attenuation- and decay-corrected, so no SUV can be computed from it."
            )

    units = str(_value(ds, "Units") or "").upper()
    if units == "GML":
        return 1.0
    counts_to_bqml = 1.0
    if units == "CNTS":
        philips_suv = _private_float(ds, 0x7053, _PHILIPS_CREATOR, 0x00)
        if philips_suv is not None:
            return _positive(philips_suv, "Philips SUV scale factor (7053,1000)")
        per_count = _private_float(ds, 0x7053, _PHILIPS_CREATOR, 0x09)
        if per_count is None:
            raise UserInputError(
                "Units (0054,1001) is CNTS but the Philips SUV scale factor (7053,1000) and the activity "
                "concentration factor (7053,1009) are both missing; export the series in BQML."
            )
        counts_to_bqml = _positive(per_count, "Philips activity concentration factor (7053,1009)")
    elif units != "BQML":
        raise UserInputError(
            f"Units (0054,1001) is {units or 'missing'}; SUV needs BQML, CNTS (Philips) or GML."
        )

    decay_correction = str(_value(ds, "DecayCorrection") or "").upper()
    if decay_correction not in ("START", "ADMIN"):
        raise UserInputError(
            f"DecayCorrection (0054,1102) is {decay_correction or 'missing'}; SUV needs START or ADMIN."
        )

    decays = decay_correction == "START"  # ADMIN: already decay-corrected to the injection time
    radio = _radiopharmaceutical(
        ds, need=injected_dose_bq is None or (decays and (half_life_s is None or injection_time is None))
    )
    weight = weight_kg if weight_kg is not None else _number(ds, "PatientWeight", "(0010,1030)", "weight_kg")
    weight = _positive(weight, "PatientWeight (0010,1030)")
    dose = (
        injected_dose_bq
        if injected_dose_bq is not None
        else _number(radio, "RadionuclideTotalDose", "(0018,1074)", "injected_dose_bq")
    )
    dose = _positive(dose, "RadionuclideTotalDose (0018,1074)")
    if dose < _MIN_PLAUSIBLE_DOSE_BQ:
        raise UserInputError(
            f"RadionuclideTotalDose (0018,1074) is {dose:g}, implausibly small in Bq (it may be in MBq); "
            "pass injected_dose_bq=<activity in Bq>."
        )
    if not decays:
        return counts_to_bqml * weight * 1000.0 / dose
    half_life = (
        half_life_s if half_life_s is not None else _number(radio, "RadionuclideHalfLife", "(0018,1075)", "half_life_s")
    )
    half_life = _positive(half_life, "RadionuclideHalfLife (0018,1075)")
    scan = scan_time if scan_time is not None else _scan_reference_time(datasets)
    injection = injection_time if injection_time is not None else _injection_time(radio, ds, scan)
    decay_s = (_naive(scan) - _naive(injection)).total_seconds()
    if decay_s < 0:
        raise UserInputError(
            f"the injection time {injection} is after the scan reference time {scan}; check "
            "RadiopharmaceuticalStartDateTime (0018,1078) / RadiopharmaceuticalStartTime (0018,1072) and "
            "SeriesDate/SeriesTime, or pass injection_time= and scan_time=."
        )
    decayed_dose = dose * 2.0 ** (-decay_s / half_life)
    return counts_to_bqml * weight * 1000.0 / decayed_dose


def suv_factor_from_values(
    weight_kg: float | None,
    injected_dose_bq: float | None,
    *,
    half_life_s: float | None = None,
    injection_time: datetime | None = None,
    scan_time: datetime | None = None,
) -> float:
    """The Bq/mL -> SUVbw factor of a PET image without DICOM headers (a NIfTI export, say).

    The same rules as :func:`suv_factor_from_dicom`, applied to a body-weight-corrected image in
    Bq/mL (attenuation- and decay-corrected) whose acquisition values are given instead of read:
    with ``injection_time`` and ``scan_time`` the dose decays with ``half_life_s`` between them
    (DecayCorrection START); without both, the image must be decay-corrected to the injection
    time (DecayCorrection ADMIN) and the dose is used as it is.

    Raises:
        UserInputError: a value is missing, not positive, implausible (a dose in MBq) or the times
            are inconsistent (the message names the value).
    """
    if weight_kg is None or injected_dose_bq is None:
        missing = " and ".join(name for name, value in (("the patient weight (kg)", weight_kg),
                                                        ("the injected dose (Bq)", injected_dose_bq)) if value is None)
        raise UserInputError(f"an SUV factor from acquisition values needs {missing}; give it, or the SUV factor itself.")
    if (injection_time is None) != (scan_time is None):
        raise UserInputError(
            "give both the injection time and the scan time (the dose decays between them), or neither when the "
            "image is decay-corrected to the injection time."
        )
    decays = injection_time is not None
    if decays and half_life_s is None:
        raise UserInputError(
            "the radionuclide half-life (s) is needed to decay the dose from the injection to the scan time "
            "(fluorine-18: 6586.2 s); give it."
        )
    header = Dataset()
    header.Units = "BQML"
    header.CorrectedImage = ["ATTN", "DECY"]
    header.DecayCorrection = "START" if decays else "ADMIN"
    return suv_factor_from_dicom(header, weight_kg=weight_kg, injected_dose_bq=injected_dose_bq,
                                 half_life_s=half_life_s, injection_time=injection_time, scan_time=scan_time)


# ----------------------------------------------------------------------------------------------
# header access


def _load_series(source: DicomSource) -> list[Dataset]:
    items: list[Any]
    if isinstance(source, Dataset):
        items = [source]
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            items = sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            items = [path]
        else:
            raise UserInputError(f"DICOM source {path} does not exist; pass a DICOM file or series directory.")
    else:
        items = list(source)
    datasets: list[Dataset] = []
    for item in items:
        if isinstance(item, Dataset):
            datasets.append(item)
            continue
        try:
            datasets.append(pydicom.dcmread(str(item), stop_before_pixels=True))
        except (InvalidDicomError, IsADirectoryError):
            continue  # not DICOM (e.g. a DICOMDIR sidecar or notes file): ignore it
    if not datasets:
        raise UserInputError(f"no DICOM file found in {source}; pass a PET DICOM file or series directory.")
    series = {str(_value(d, "SeriesInstanceUID")) for d in datasets if _value(d, "SeriesInstanceUID")}
    if len(series) > 1:
        raise UserInputError(
            f"SeriesInstanceUID (0020,000E) differs between the files ({len(series)} series); "
            "pass the files of one PET series only."
        )
    return datasets


def _value(ds: Dataset, keyword: str) -> Any:
    """The value of ``keyword`` in ``ds``, or None when absent or empty."""
    value = ds.get(keyword, None)
    if value is None or (isinstance(value, (str, bytes, list)) and len(value) == 0):
        return None
    return value


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace("\\", " ").split() if v]
    try:
        return list(value)
    except TypeError:
        return [value]


def _missing(tag: str, consequence: str, override: str | None = None) -> str:
    fix = f"; pass {override}=... to supply it" if override else ""
    return f"{tag} is missing or empty: {consequence}{fix}."


def _number(ds: Dataset, keyword: str, tag: str, override: str) -> float:
    value = _value(ds, keyword)
    if value is None:
        raise UserInputError(_missing(f"{keyword} {tag}", "it is needed for SUV", override))
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{keyword} {tag} is {value!r}, not a number; pass {override}=...") from err


def _positive(value: float, tag: str) -> float:
    if not value > 0 or value != value or value == float("inf"):
        raise UserInputError(f"{tag} is {value!r}; it must be a positive number.")
    return float(value)


def _radiopharmaceutical(ds: Dataset, need: bool) -> Dataset:
    seq = _value(ds, "RadiopharmaceuticalInformationSequence")
    if seq:
        return seq[0]
    if need:
        raise UserInputError(
            _missing(
                "RadiopharmaceuticalInformationSequence (0054,0016)",
                "dose, half-life and injection time are unknown",
                "injected_dose_bq=, half_life_s= and injection_time",
            )
        )
    return Dataset()


def _private_value(ds: Dataset, group: int, creator: str, element: int) -> Any:
    try:
        block = ds.private_block(group, creator)
        value = block[element].value
    except KeyError:
        return None
    return value if value not in (None, b"", "") else None


def _private_float(ds: Dataset, group: int, creator: str, element: int) -> float | None:
    value = _private_value(ds, group, creator, element)
    if value is None:
        return None
    if isinstance(value, bytes):  # VR UN in implicit-VR files: DS text or an 8-byte double
        try:
            return float(value.strip(b"\x00 ").decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            if len(value) == 8:
                return float(struct.unpack("<d", value)[0])
            raise UserInputError(f"private tag ({group:04X},10{element:02X}) holds unreadable bytes {value!r}.")
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0]
    return float(value)


# ----------------------------------------------------------------------------------------------
# dates and times


def _parse_date(text: Any, tag: str) -> date:
    s = str(text).strip().replace(".", "")
    try:
        return datetime.strptime(s[:8], "%Y%m%d").date()
    except ValueError as err:
        raise UserInputError(f"{tag} is {text!r}, not a DICOM date (YYYYMMDD).") from err


def _parse_time(text: Any, tag: str) -> time:
    s = str(text).strip().replace(":", "")
    whole, _, frac = s.partition(".")
    try:
        if len(whole) not in (2, 4, 6) or not whole.isdigit():
            raise ValueError(s)
        hh, mm, ss = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
        micro = int((frac + "000000")[:6]) if frac else 0
        return time(hh, mm, min(ss, 59), micro)  # leap second 60 folds into 59
    except ValueError as err:
        raise UserInputError(f"{tag} is {text!r}, not a DICOM time (HHMMSS.FFFFFF).") from err


def _parse_datetime(text: Any, tag: str) -> datetime:
    s = str(text).strip()
    for sign in ("+", "-"):  # drop a UTC offset: all header times are compared in one local zone
        pos = s.find(sign, 8)
        if pos > 0:
            s = s[:pos]
    if len(s) < 8:
        raise UserInputError(f"{tag} is {text!r}, not a DICOM date-time (YYYYMMDDHHMMSS).")
    day = _parse_date(s[:8], tag)
    clock = _parse_time(s[8:], tag) if len(s) > 8 else time(0, 0)
    return datetime.combine(day, clock)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _series_datetime(ds: Dataset) -> datetime:
    series_date, series_time = _value(ds, "SeriesDate"), _value(ds, "SeriesTime")
    if series_date is None or series_time is None:
        missing = "SeriesDate (0008,0021)" if series_date is None else "SeriesTime (0008,0031)"
        raise UserInputError(_missing(missing, "the scan reference time is unknown", "scan_time"))
    return datetime.combine(
        _parse_date(series_date, "SeriesDate (0008,0021)"), _parse_time(series_time, "SeriesTime (0008,0031)")
    )


def _acquisition_datetime(ds: Dataset, series_day: date) -> datetime | None:
    acq_time = _value(ds, "AcquisitionTime")
    if acq_time is None:
        acq_dt = _value(ds, "AcquisitionDateTime")
        return _parse_datetime(acq_dt, "AcquisitionDateTime (0008,002A)") if acq_dt else None
    acq_date = _value(ds, "AcquisitionDate")
    day = _parse_date(acq_date, "AcquisitionDate (0008,0022)") if acq_date else series_day
    return datetime.combine(day, _parse_time(acq_time, "AcquisitionTime (0008,0032)"))


def _scan_reference_time(datasets: list[Dataset]) -> datetime:
    series = _series_datetime(datasets[0])
    acquisitions = [a for a in (_acquisition_datetime(d, series.date()) for d in datasets) if a is not None]
    if not acquisitions or series <= min(acquisitions):
        return series
    ge_scan = _private_value(datasets[0], 0x0009, _GE_CREATOR, 0x0D)
    if ge_scan is not None:
        if isinstance(ge_scan, bytes):
            ge_scan = ge_scan.decode("ascii", errors="replace").strip("\x00 ")
        return _parse_datetime(ge_scan, "GE private scan date-time (0009,100D)")
    return min(acquisitions)


def _injection_time(radio: Dataset, ds: Dataset, scan: datetime) -> datetime:
    start_dt = _value(radio, "RadiopharmaceuticalStartDateTime")
    if start_dt is not None:
        return _parse_datetime(start_dt, "RadiopharmaceuticalStartDateTime (0018,1078)")
    start_time = _value(radio, "RadiopharmaceuticalStartTime")
    if start_time is None:
        raise UserInputError(
            _missing(
                "RadiopharmaceuticalStartDateTime (0018,1078) and RadiopharmaceuticalStartTime (0018,1072)",
                "the injection time is unknown",
                "injection_time",
            )
        )
    clock = _parse_time(start_time, "RadiopharmaceuticalStartTime (0018,1072)")
    series_date = _value(ds, "SeriesDate")
    day = _parse_date(series_date, "SeriesDate (0008,0021)") if series_date else _naive(scan).date()
    injection = datetime.combine(day, clock)
    if injection > _naive(scan):
        injection -= timedelta(days=1)  # injected before midnight, scanned after it
    return injection
