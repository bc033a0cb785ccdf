"""Invertible intensity mappings between physical units (HU, SUV, MRI signal) and the [0, 1] model range.

Every transform here is the affine map ``y = (x - lower) / (upper - lower)``, optionally clipped to
[0, 1], where ``lower``/``upper`` are fixed (HU window, SUV range, MRI fixed range) or computed from
the image (MRI percentiles, of the whole image or per slice); the map itself and its inverse are
:mod:`monai_tat.transforms.model_mapping`'s. The bounds actually used are stored in the output MetaTensor's
``applied_operations`` so that :meth:`inverse` maps a restored image back to physical units even
when it is called on another instance of the same class (for example in another process).

Clipping (``clip=True``) is what both papers do before training; it is not invertible outside the
window: a clipped value comes back as the window bound. With ``clip=False`` the map is an exact
bijection on all finite values (round trip error below 1e-5 of the window width in float32).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_tensor

from monai_tat.errors import UserInputError
from monai_tat.tasks import get_task
from monai_tat.transforms._checks import ensure_finite, float_dtype_for
from monai_tat.transforms.model_mapping import (
    ModelBounds,
    channel_first_slice_axis,
    fixed_bounds,
    from_model,
    percentile_bounds,
    slice_percentile_bounds,
    to_model,
)

__all__ = [
    "CT_WINDOWS",
    "HUWindow",
    "HUWindowd",
    "MRINormalize",
    "MRINormalized",
    "SUVNormalize",
    "SUVNormalized",
    "window_bounds",
]

_CT, _PET, _MRI = get_task("ct"), get_task("pet"), get_task("mri")

# Named CT windows as (lower, upper) HU. "model" is the papers' network input range
# (FACTS.md, data conventions; AMIR's code uses 3071 as the top). Display windows are
# width/level pairs: abdomen W400/L40, lung W1500/L-600, brain W80/L40 and bone W1800/L400,
# the values listed in Radiopaedia's "Windowing (CT)" article.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "model": _CT.model_range,
    "abdomen": _CT.eval_window,
    "lung": (-1350.0, 150.0),
    "brain": (0.0, 80.0),
    "bone": (-500.0, 1300.0),
}


def window_bounds(
    window: str | Sequence[float] | None = "model",
    width: float | None = None,
    level: float | None = None,
) -> tuple[float, float]:
    """Resolve a CT window to ``(lower, upper)`` in HU.

    Args:
        window: a name from :data:`CT_WINDOWS` or an explicit ``(lower, upper)`` pair in HU;
            ignored (must be ``None`` or ``"model"``) when ``width``/``level`` are given.
        width: window width in HU (with ``level``), e.g. 400.
        level: window centre in HU (with ``width``), e.g. 40.
    """
    if width is not None or level is not None:
        if width is None or level is None:
            raise UserInputError("HUWindow: give both width and level (for example width=400, level=40).")
        if window not in (None, "model"):
            raise UserInputError("HUWindow: give either window or width/level, not both.")
        lower, upper = level - width / 2.0, level + width / 2.0
    elif isinstance(window, str):
        key = window.lower()
        if key not in CT_WINDOWS:
            raise UserInputError(
                f"HUWindow: unknown window {window!r}; use one of {sorted(CT_WINDOWS)} "
                "or an explicit (lower, upper) pair in HU."
            )
        lower, upper = CT_WINDOWS[key]
    elif window is not None and len(window) == 2:
        lower, upper = float(window[0]), float(window[1])
    else:
        raise UserInputError(f"HUWindow: window must be a name or a (lower, upper) pair, got {window!r}.")
    return _checked_range(float(lower), float(upper), "HUWindow")


def _checked_range(lower: float, upper: float, who: str) -> tuple[float, float]:
    if not (np.isfinite(lower) and np.isfinite(upper)) or upper <= lower:
        raise UserInputError(f"{who}: the range must satisfy lower < upper (finite), got ({lower}, {upper}).")
    return lower, upper


class _AffineToUnit(InvertibleTransform):
    """Base: ``y = (x - lower) / (upper - lower)`` with bounds chosen by :meth:`bounds`.

    Input: array or tensor of any shape (MONAI channel-first by convention), any real dtype.
    Output: MetaTensor, float32 (float64 stays float64).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, clip: bool) -> None:
        self.clip = bool(clip)

    def bounds(self, img: torch.Tensor) -> ModelBounds:
        """The physical values mapped to 0 and 1 for this image."""
        raise NotImplementedError

    def __call__(self, img: np.ndarray | torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        if img_t.is_complex():
            raise UserInputError(f"{name}: the input is complex; pass a magnitude (real) image.")
        ensure_finite(img_t, name)
        img_t = img_t.to(float_dtype_for(img_t.dtype))
        bounds = self.bounds(img_t)
        out = to_model(img_t, bounds)
        if self.clip:
            out = out.clamp(0.0, 1.0)
        info = {**bounds.record(), "clip": self.clip}
        return self.push_transform(out, extra_info=info)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Map a [0, 1] image back to physical units with the bounds recorded on ``data``.

        ``data`` must be a MetaTensor whose last applied operation is this transform (copy the
        normalised input's metadata onto a network output before inverting it).
        """
        name = type(self).__name__
        info = self._pop_own_operation(data)
        ensure_finite(data, name, "image to invert")
        return from_model(data.to(float_dtype_for(data.dtype)), ModelBounds.from_record(info))

    def _pop_own_operation(self, data: torch.Tensor) -> dict:
        name = type(self).__name__
        ops = data.applied_operations if isinstance(data, MetaTensor) else []
        if not ops:
            raise UserInputError(
                f"{name}.inverse: the image carries no record of {name} (no applied_operations). Invert a "
                "MetaTensor produced by this transform, or copy its metadata onto the network output, e.g. "
                "MetaTensor(output, meta=normalised.meta, applied_operations=normalised.applied_operations)."
            )
        last = ops[-1]
        if last.get(TraceKeys.CLASS_NAME) != name:
            raise UserInputError(
                f"{name}.inverse: the most recent operation on the image is {last.get(TraceKeys.CLASS_NAME)}, "
                f"not {name}; invert the later transforms first."
            )
        ops.pop()
        return last[TraceKeys.EXTRA_INFO]


class HUWindow(_AffineToUnit):
    """CT: map a HU window to [0, 1] (Hounsfield units in, model range out).

    Args:
        window: ``"model"`` (the papers' network range [-1024, 3072] HU, default), a display window
            name (``"abdomen"``, ``"lung"``, ``"brain"``, ``"bone"``, see :data:`CT_WINDOWS`) or an
            explicit ``(lower, upper)`` pair in HU.
        width, level: alternative to ``window``: window width and centre in HU.
        clip: clip the output to [0, 1] (default, as the papers do and as a display window needs);
            values outside the window then come back from :meth:`inverse` as the window bounds.

    Example:
        >>> t = HUWindow("abdomen")   # [-160, 240] HU -> [0, 1]
        >>> hu = t.inverse(t(image))  # back to HU (clipped to the window)
    """

    def __init__(
        self,
        window: str | Sequence[float] | None = "model",
        width: float | None = None,
        level: float | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__(clip)
        self.lower, self.upper = window_bounds(window, width, level)

    def bounds(self, img: torch.Tensor) -> ModelBounds:
        return fixed_bounds(self.lower, self.upper)


class SUVNormalize(_AffineToUnit):
    """PET: map SUV (body weight) ``suv_range`` (default the papers' [0, 20]) to [0, 1].

    Args:
        suv_range: ``(lower, upper)`` SUV mapped to 0 and 1.
        clip: clip the output to [0, 1] (default, as the papers do); SUV above ``upper`` then come
            back from :meth:`inverse` as ``upper``.
    """

    def __init__(self, suv_range: Sequence[float] = _PET.model_range, clip: bool = True) -> None:
        super().__init__(clip)
        self.lower, self.upper = _checked_range(float(suv_range[0]), float(suv_range[1]), "SUVNormalize")

    def bounds(self, img: torch.Tensor) -> ModelBounds:
        return fixed_bounds(self.lower, self.upper)


class MRINormalize(_AffineToUnit):
    """MRI: map a fixed signal range or percentiles (of the whole image or of each slice) to [0, 1].

    Args:
        mode: ``"percentile"`` (default): the ``percentiles`` of the input map to 0 and 1; the
            values travel in the metadata, so :meth:`inverse` restores the original scale.
            ``"fixed"``: ``value_range`` (default the papers' [0, 4095]) maps to [0, 1].
        percentiles: lower and upper percentile in [0, 100] for ``mode="percentile"``.
        value_range: ``(lower, upper)`` signal for ``mode="fixed"``.
        clip: clip the output to [0, 1] (default False, so the map is exactly invertible).
        per_slice: ``mode="percentile"`` only. False (default): the percentiles of the whole input
            (all channels and slices together, a volume scaled once). True: the percentiles of each
            2D slice (all channels together), the task mapping of MRI
            (:func:`~monai_tat.transforms.model_intensity_transform`): the input is channel-first,
            a ``(C, H, W)`` image is one slice and a ``(C, I, J, K)`` volume is sliced along its
            axial axis (from its affine; the last axis without one), the axis the restoration
            engine slices; nearly empty slices are handled as
            :func:`~monai_tat.transforms.model_mapping.slice_percentile_bounds` says.

    A constant image (or slice) is shifted to 0 without scaling.
    """

    def __init__(
        self,
        mode: str = "percentile",
        percentiles: Sequence[float] = (0.5, 99.5),
        value_range: Sequence[float] = _MRI.eval_window,
        clip: bool = False,
        per_slice: bool = False,
    ) -> None:
        super().__init__(clip)
        if mode not in ("percentile", "fixed"):
            raise UserInputError(f"MRINormalize: mode must be 'percentile' or 'fixed', got {mode!r}.")
        lo_p, hi_p = float(percentiles[0]), float(percentiles[1])
        if not 0.0 <= lo_p < hi_p <= 100.0:
            raise UserInputError(f"MRINormalize: need 0 <= lower < upper <= 100 percentiles, got {percentiles}.")
        if per_slice and mode != "percentile":
            raise UserInputError("MRINormalize: per_slice applies to mode='percentile' only.")
        self.mode = mode
        self.percentiles = (lo_p, hi_p)
        self.value_range = _checked_range(float(value_range[0]), float(value_range[1]), "MRINormalize")
        self.per_slice = bool(per_slice)

    def bounds(self, img: torch.Tensor) -> ModelBounds:
        if self.mode == "fixed":
            return fixed_bounds(*self.value_range)
        if self.per_slice:
            return slice_percentile_bounds(img, self.percentiles, channel_first_slice_axis(img))
        return percentile_bounds(img, self.percentiles)


class _AffineToUnitd(MapTransform, InvertibleTransform):
    """Dictionary wrapper: applies an array transform to every key, inverts per key."""

    backend = _AffineToUnit.backend

    def __init__(self, keys: KeysCollection, transform: _AffineToUnit, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform.inverse(d[key])
        return d


class HUWindowd(_AffineToUnitd):
    """Dictionary version of :class:`HUWindow` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        window: str | Sequence[float] | None = "model",
        width: float | None = None,
        level: float | None = None,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, HUWindow(window, width, level, clip), allow_missing_keys)


class SUVNormalized(_AffineToUnitd):
    """Dictionary version of :class:`SUVNormalize` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        suv_range: Sequence[float] = (0.0, 20.0),
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, SUVNormalize(suv_range, clip), allow_missing_keys)


class MRINormalized(_AffineToUnitd):
    """Dictionary version of :class:`MRINormalize` (same arguments after ``keys``; statistics per key)."""

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "percentile",
        percentiles: Sequence[float] = (0.5, 99.5),
        value_range: Sequence[float] = _MRI.eval_window,
        clip: bool = False,
        allow_missing_keys: bool = False,
        per_slice: bool = False,
    ) -> None:
        super().__init__(keys, MRINormalize(mode, percentiles, value_range, clip, per_slice), allow_missing_keys)
