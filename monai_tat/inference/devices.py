"""Device and mixed-precision choices for inference."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from monai_tat.errors import UserInputError

__all__ = ["resolve_device", "resolve_amp", "autocast", "default_batch_size", "is_out_of_memory"]

AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device.

    Raises:
        UserInputError: an unknown name, or CUDA asked for where there is none.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as err:
        raise UserInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(
                f"device {device!r} asked for but CUDA is not available here; choose the CPU or automatic device",
                setting="device",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserInputError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible"
            )
    elif dev.type != "cpu":
        raise UserInputError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def resolve_amp(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for float32.

    ``amp`` is None / False / "none" (float32), True / "bf16" or "fp16". Mixed precision is used only
    on CUDA; on CPU it is ignored with a warning (CPU inference runs in float32).
    """
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("none", "fp32", "float32", "")):
        return None
    key = "bf16" if amp is True else str(amp).lower()
    if key not in AMP_DTYPES:
        raise UserInputError(f"unknown mixed precision {amp!r}; use none, bf16 or fp16")
    if device.type != "cuda":
        warnings.warn(f"mixed precision {key} is only used on CUDA; running in float32 on {device}", stacklevel=3)
        return None
    return AMP_DTYPES[key]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on CUDA for ``dtype``; a no-op for float32."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def default_batch_size(device: torch.device) -> int:
    """Slices per batch when none is given: 8 on a GPU (halved on out-of-memory), 1 on CPU.

    On CPU a larger batch gives no speed and multiplies the memory of a 512x512 slice.
    """
    return 8 if device.type == "cuda" else 1


def is_out_of_memory(err: BaseException) -> bool:
    """True for the errors a too-large batch raises on a GPU (CUDA's OutOfMemoryError and kin)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
