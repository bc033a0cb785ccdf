"""The image writer of the bundles' ``SaveImaged``: verified atomic NIfTI, no spatial axis dropped.

MONAI's writers squeeze every trailing axis of size one, so a one-slice volume ``(1, H, W, 1)``
would be saved as a 2D ``(H, W)`` image and lose its slice spacing. This writer drops only the
channel axis, and writes through :func:`monai_tat.io.atomic.atomic_write` (temporary file, read
back, then renamed), like every other file of the package.
"""

from __future__ import annotations

from typing import Any

from monai.data import NibabelWriter

from monai_tat.io.atomic import atomic_write

__all__ = ["VolumeWriter"]


class VolumeWriter(NibabelWriter):
    """``NibabelWriter`` that keeps size-one spatial axes and publishes files only once verified.

    Use as ``SaveImaged(..., writer="monai_tat.io.bundle_writer.VolumeWriter")``. Existing files are
    replaced (as MONAI's writers do), but never by a partial one.
    """

    def set_data_array(self, data_array: Any, channel_dim: Any = 0, squeeze_end_dims: bool = True,
                       **kwargs: Any) -> None:
        super().set_data_array(data_array, channel_dim=channel_dim, squeeze_end_dims=False, **kwargs)
        if self.data_obj.ndim > 3 and self.data_obj.shape[-1] == 1:  # (H, W, D, C=1) -> (H, W, D)
            self.data_obj = self.data_obj[..., 0]

    def write(self, filename: Any, verbose: bool = False, **obj_kwargs: Any) -> None:
        atomic_write(filename, lambda tmp: NibabelWriter.write(self, str(tmp), verbose, **obj_kwargs), overwrite=True)
