"""Device and mixed-precision choices for inference."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from monai_tat.errors import UserInputError

__all__ = [
    "resolve_device",
    "resolve_amp",
    "autocast",
    "default_batch_size",
    "batch_size_for_memory",
    "free_memory_bytes",
    "is_out_of_memory",
]

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
    """Slices per batch when none is given and none is measured: 8 on a GPU, 1 on CPU.

    On CPU a larger batch gives no speed and multiplies the memory of a 512x512 slice. On a GPU the
    engine measures the first slice and uses :func:`batch_size_for_memory` instead.
    """
    return 8 if device.type == "cuda" else 1


def free_memory_bytes(device: torch.device) -> int:
    """Bytes a new allocation can use on a CUDA device: free device memory (``torch.cuda.mem_get_info``)
    plus what torch's caching allocator holds unused."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def batch_size_for_memory(bytes_per_slice: int, free_bytes: int, fraction: float = 0.8, cap: int = 32) -> int:
    """Slices per batch that fit ``fraction`` of ``free_bytes`` at ``bytes_per_slice`` each, from 1 to ``cap``.

    ``bytes_per_slice`` is the peak memory one slice needs (input, activations, output); the margin
    (1 - fraction) covers the allocator's fragmentation. A batch that still runs out of memory is
    halved by the engine.
    """
    if bytes_per_slice <= 0:
        return cap
    return max(1, min(cap, int(fraction * free_bytes) // int(bytes_per_slice)))


#: Error texts of a failed device allocation: the caching allocator's, and cuBLAS / cuDNN failing to
#: get their workspace (cuDNN reports some workspace failures as NOT_SUPPORTED; a batch too large for
#: memory is the common cause, and the retry ends at one slice with the original text).
OUT_OF_MEMORY_MARKERS = (
    "out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cudnn_status_not_supported",
)


def is_out_of_memory(err: BaseException) -> bool:
    """True for the errors a too-large batch raises on a GPU (CUDA's OutOfMemoryError and kin)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(marker in text for marker in OUT_OF_MEMORY_MARKERS)
