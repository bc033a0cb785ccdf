"""A bundle postprocessing step: save each restored image as a new DICOM series of its source's study.

:class:`SaveDicomSeriesd` is the DICOM counterpart of MONAI's ``SaveImaged`` for items read from a
DICOM series folder by ``LoadImaged``. It writes with :func:`monai_tat.io.write_dicom_series` (new
series and instance UIDs, same study and frame of reference, ``DERIVED``, SourceImageSequence,
physical values re-encoded; published atomically after reading every file back).

Add it to a bundle's ``postprocessing`` (the prediction must be in the units the loader gave and in
the loaded array order, as the bundles' ``RestorationInferer`` returns it; invert any resampling or
reorientation first)::

    {"_target_": "monai_tat.transforms.save_dicom.SaveDicomSeriesd", "keys": "pred",
     "output_dir": "@output_dir", "network": "@network"}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.io.dicom import dicom_series_files, is_dicom_file
from monai_tat.io.dicom_write import write_dicom_series
from monai_tat.io.geometry import affine_from_itk
from monai_tat.tasks import get_task

__all__ = ["SaveDicomSeriesd"]


class SaveDicomSeriesd(MapTransform):
    """Write ``data[key]`` (channel-first, one channel) as a DICOM series derived from ``meta["filename_or_obj"]``.

    Args:
        keys: the restored image(s), e.g. ``"pred"``; shape (1, I, J, K) or (1, I, J), meta from
            the loaded DICOM image (MONAI ``LoadImaged`` of a series folder or file).
        output_dir: folder in which ``<series folder name>_<output_postfix>/`` is created.
        network: the restoration network (its weights are hashed into the DerivationDescription,
            its class names the network).
        task_key: the item's task (``"ct"``, ``"pet"``, ``"mri"``); an item without it uses ``task``.
        task: task for items without ``task_key``.
        values: "source" (default): the image is in the units the DICOM rescale gives (HU, Bq/mL),
            as MONAI's readers load it; "suv": a PET image is in SUV and is written back in the
            source's units with the SUV factor from its headers.
        output_postfix: appended to the series folder name.
        overwrite: replace an existing output folder.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | Path,
        network: nn.Module,
        task_key: str = "task",
        task: str | None = None,
        values: str = "source",
        output_postfix: str = "restored",
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if values not in ("source", "suv"):
            raise UserInputError(f"values must be 'source' or 'suv', got {values!r}")
        self.output_dir = Path(output_dir)
        self.network = network
        self.task_key, self.task, self.values = task_key, task, values
        self.output_postfix, self.overwrite = output_postfix, overwrite

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai_tat.io.provenance import weights_sha256

        d = dict(data)
        task = d.get(self.task_key, self.task)
        if task is None:
            raise UserInputError(f"the item has no '{self.task_key}' and no task was given; name the task")
        digest = weights_sha256(self.network)
        for key in self.key_iterator(d):
            image = d[key]
            source = Path(str((getattr(image, "meta", {}) or {}).get("filename_or_obj", "")))
            if not (source.is_dir() or is_dicom_file(source)):
                raise UserInputError(
                    f"'{key}' was not loaded from DICOM ({source}); a DICOM series is written only from a DICOM "
                    "input, whose patient and study it keeps (none is invented); use SaveImaged instead"
                )
            files = dicom_series_files(source)
            volume = _spatial(image)
            _check_geometry(volume, files, source)
            factor = 1.0
            if self.values == "suv" and get_task(str(task)).dicom_conversion == "suv_factor":
                from monai_tat.io.suv import suv_factor_from_dicom

                factor = float(suv_factor_from_dicom(files))
            volume.meta.update({"dicom_files": list(files), "suv_factor": factor})
            self.output_dir.mkdir(parents=True, exist_ok=True)
            name = (source.name if source.is_dir() else source.parent.name) or "series"
            write_dicom_series(volume, self.output_dir / f"{name}_{self.output_postfix}", weights_sha256=digest,
                               network=type(self.network).__name__, task=str(task), overwrite=self.overwrite)
        return d


def _spatial(image: Any) -> MetaTensor:
    tensor = torch.as_tensor(image).detach().cpu()
    if tensor.ndim in (3, 4) and tensor.shape[0] == 1:
        tensor = tensor[0]
    meta = dict(getattr(image, "meta", {}) or {})
    affine = meta.get("affine")
    return MetaTensor(tensor.float(), affine=affine, meta={k: v for k, v in meta.items() if k != "affine"})


def _check_geometry(volume: MetaTensor, files: list[str], source: Path) -> None:
    """The image must still be on the source series' grid (no resampling or reorientation since loading)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetImageIO("GDCMImageIO")
    reference = reader.Execute()
    expected_shape = tuple(reference.GetSize())
    shape = tuple(volume.shape) if volume.ndim == 3 else (*volume.shape, 1)
    expected = affine_from_itk(reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
    affine = volume.affine.detach().cpu().numpy() if volume.affine is not None else None
    if shape != expected_shape or affine is None or (volume.ndim == 3 and not np.allclose(affine, expected, atol=1e-3)):
        raise UserInputError(
            f"the image (shape {shape}) is not on the grid of its source series {source} (shape {expected_shape}); "
            "invert any resampling or reorientation (Invertd) before saving it as DICOM"
        )
