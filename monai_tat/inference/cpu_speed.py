"""Faster CPU inference: the network compiled ahead of time with frozen weights, cached on disk.

On a CPU the network is exported (``torch.export``) at one slice size and compiled by inductor
into a native library (AOTInductor) with its weights frozen: constants are folded, the
convolution weights are prepacked for oneDNN, and the pointwise work between convolutions
(LayerNorm, the GELU gate, residual additions) is fused into loops over each feature map. The
compiled package (``.pt2``) is written into a cache folder under a key made of everything it
depends on, so a later restoration of the same network at the same slice size loads it in
seconds instead of compiling again:

- the weights (SHA-256 of every tensor of the state dict, names and values) and the network's
  class and configuration,
- the slice size ``H x W`` (the local attention windows and the padding are frozen at it),
- torch's version, the CPU instruction set torch dispatches to, and the thread count (the
  compiled loops fix their OpenMP team size),
- the compile settings of this module.

Whether it is used (``mode``, or the environment variable ``MONAI_TAT_CPU_COMPILE``):

- ``"auto"`` (default): for this package's networks (TAT, AMIR, Restormer), when a compiled
  package for this network and slice size is cached (it is faster than eager from the first
  slice), or when the volume is large enough that compiling pays for itself within the volume
  (:func:`compile_pays_off`, measured for TAT and AMIR). Other volumes and modules run eagerly.
- ``"on"``: always on the CPU (compiling first when nothing is cached).
- ``"off"``: never; the network runs eagerly.

Each compiled network is checked against the eager network on the first slice it restores; a
difference above :data:`TOLERANCE` (or any failure to compile, e.g. no C++ compiler) falls back
to the eager network with a warning, and the restoration goes on with the eager output.

The cache folder is ``MONAI_TAT_CACHE_DIR`` when set, else ``~/.cache/monai_tat/cpu_compiled``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.networks.trunk import RestormerTrunk

__all__ = [
    "CPU_COMPILE_MODES",
    "TOLERANCE",
    "cpu_compile_mode",
    "compile_cache_dir",
    "artifact_key",
    "compile_for_cpu",
    "compile_pays_off",
    "CompiledSliceNetwork",
    "prepare_cpu_network",
    "eager_network",
]

logger = logging.getLogger(__name__)

CPU_COMPILE_MODES = ("auto", "on", "off")
MODE_ENV = "MONAI_TAT_CPU_COMPILE"
CACHE_ENV = "MONAI_TAT_CACHE_DIR"

#: Largest |compiled - eager| accepted on the first slice, in the model range [0, 1].
TOLERANCE = 1e-4

#: Inductor settings of the compiled packages (part of the cache key).
INDUCTOR_CONFIGS: dict[str, Any] = {"freezing": True}

#: ``auto`` compiles (nothing cached) a volume of at least this many slices, by network class and
#: width (``config["dim"]``: the measured configurations); see :func:`compile_pays_off`.
BREAK_EVEN_SLICES: dict[tuple[str, int], int] = {("TAT", 16): 800}
#: ... or of at least this many pixels (slices x H x W).
BREAK_EVEN_PIXELS: dict[tuple[str, int], int] = {("AMIR", 16): 26_000_000}


def cpu_compile_mode(mode: Optional[str] = None) -> str:
    """``mode``, else the environment variable ``MONAI_TAT_CPU_COMPILE``, else ``"auto"``.

    Raises:
        UserInputError: a value other than auto, on, off.
    """
    value = mode if mode is not None else os.environ.get(MODE_ENV, "auto")
    value = str(value).strip().lower()
    if value not in CPU_COMPILE_MODES:
        raise UserInputError(
            f"unknown CPU compile mode {value!r} (from {'the caller' if mode is not None else MODE_ENV}); "
            "use auto, on or off", setting="cpu_compile",
        )  # fmt: skip
    return value


def compile_cache_dir() -> Path:
    """Folder of the compiled packages: ``MONAI_TAT_CACHE_DIR`` or ``~/.cache/monai_tat/cpu_compiled``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "monai_tat" / "cpu_compiled"


def _weights_digest(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def artifact_key(network: nn.Module, height: int, width: int, threads: Optional[int] = None) -> str:
    """Cache key of ``network`` compiled for ``(1, 1, height, width)`` slices: a hex digest of the
    weights, class, configuration, size, torch version, CPU capability, threads and settings."""
    config = getattr(network, "config", None)
    description = {
        "class": f"{type(network).__module__}.{type(network).__qualname__}",
        "config": json.dumps(config, sort_keys=True, default=str) if config is not None else None,
        "weights": _weights_digest(network),
        "size": [int(height), int(width)],
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "inductor": INDUCTOR_CONFIGS,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def _artifact_path(network: nn.Module, height: int, width: int, cache_dir: Optional[Path]) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else compile_cache_dir()
    return folder / f"{type(network).__name__.lower()}_{height}x{width}_{artifact_key(network, height, width)}.pt2"


def is_cached(network: nn.Module, height: int, width: int, cache_dir: Optional[Path] = None) -> bool:
    """Whether a compiled package of ``network`` at ``height x width`` is in the cache."""
    return _artifact_path(network, height, width, cache_dir).is_file()


def compile_for_cpu(
    network: nn.Module, height: int, width: int, cache_dir: Optional[Path] = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, bool]:
    """``network`` compiled for ``(1, 1, height, width)`` float32 slices on the CPU.

    Loads the cached package when there is one; else exports, compiles and caches it (written to a
    temporary name in the cache folder and renamed, so concurrent runs never read half a file).

    Returns:
        (the compiled callable ``(1, 1, H, W) -> (1, 1, H, W)``, seconds spent, whether it came
        from the cache).
    """
    path = _artifact_path(network, height, width, cache_dir)
    start = time.perf_counter()
    from_cache = path.is_file()
    if not from_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        example = torch.zeros(1, 1, height, width)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(network.eval().cpu(), (example,), strict=False)
            handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".pt2", dir=path.parent)
            os.close(handle)
            try:
                torch._inductor.aoti_compile_and_package(
                    exported, package_path=tmp_name, inductor_configs=dict(INDUCTOR_CONFIGS)
                )
                os.replace(tmp_name, path)
            finally:
                Path(tmp_name).unlink(missing_ok=True)
    runner = torch._inductor.aoti_load_package(str(path))
    return runner, time.perf_counter() - start, from_cache


def compile_pays_off(network: nn.Module, height: int, width: int, slices: int) -> bool:
    """Whether compiling ``network`` (nothing cached) is worth it for ``slices`` slices of ``height x width``.

    From ``python -m monai_tat.benchmarks cpu-volumes`` on a quiet 2-core CPU (docs/speed.md),
    break-even = compile seconds / (eager - compiled seconds per slice):

    - TAT: its local attention windows are unrolled at the slice size, so compiling takes longer
      for larger slices (33 s at 192 x 192, 80 s at 256 x 256, 209 s at 512 x 512) while the
      saving per slice grows too; the break-even stays near 800 slices (838, 836, 785):
      :data:`BREAK_EVEN_SLICES`.
    - AMIR: compiles in about 32 s at any slice size and saves about 1.3e-6 s per pixel; the
      break-even is about 2.6e7 pixels (98 slices of 512 x 512, 385 of 256 x 256, 585 of
      192 x 192): :data:`BREAK_EVEN_PIXELS`.

    Both are the shipped width (``dim`` 16). The papers' TAT (``dim`` 48) took 41 minutes to
    compile at 512 x 512 and then ran 1.04 times faster than eager (``cpu-levers``), which no
    volume wins back; it and other networks (Restormer, a user's module) are compiled by ``auto``
    only when a package is cached. A cached package costs a second to load, so a later volume of
    the same slice size gains from its first slice.
    """
    config = getattr(network, "config", None) or {}
    key = (type(network).__name__, int(config.get("dim", 0)))
    if key in BREAK_EVEN_SLICES:
        return int(slices) >= BREAK_EVEN_SLICES[key]
    if key in BREAK_EVEN_PIXELS:
        return int(slices) * int(height) * int(width) >= BREAK_EVEN_PIXELS[key]
    return False


class CompiledSliceNetwork(nn.Module):
    """The eager ``network`` with a compiled fast path for ``(B, 1, H, W)`` batches at one slice size.

    Batches of that size run slice by slice through the compiled package (the CPU gains nothing
    from batching); any other input runs eagerly. The first compiled slice is checked against the
    eager network; above :data:`TOLERANCE` the fast path is dropped with a warning.

    Attributes:
        network: the eager network (its class names the restoration in the output's metadata).
        compile_seconds: time spent compiling or loading the package.
        from_cache: whether the package came from the cache.
    """

    def __init__(self, network: nn.Module, height: int, width: int, cache_dir: Optional[Path] = None) -> None:
        super().__init__()
        self.network = network
        self.size = (int(height), int(width))
        self._compiled, self.compile_seconds, self.from_cache = compile_for_cpu(network, height, width, cache_dir)
        self.checked = False
        self.max_abs_diff: Optional[float] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None or x.device.type != "cpu" or x.dtype != torch.float32 or x.ndim != 4 \
                or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.size:  # fmt: skip
            return self.network(x)
        outputs = [self._compiled(x[b : b + 1].contiguous()) for b in range(x.shape[0])]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if not self.checked:
            self.checked = True
            expected = self.network(x)
            self.max_abs_diff = float((out - expected).abs().max())
            if not self.max_abs_diff <= TOLERANCE:
                warnings.warn(
                    f"the compiled CPU network differs from the eager one by {self.max_abs_diff:.2e} "
                    f"(> {TOLERANCE:.0e}); running eagerly", stacklevel=2,
                )  # fmt: skip
                self._compiled = None
                return expected
        return out


def prepare_cpu_network(
    network: nn.Module, device: torch.device, height: int, width: int, slices: int, mode: Optional[str] = None,
    cache_dir: Optional[Path] = None,
) -> nn.Module:
    """The network to restore ``slices`` slices of ``height x width`` with on ``device``.

    On the CPU, with ``mode`` (or ``MONAI_TAT_CPU_COMPILE``) ``on``, or ``auto`` when a package is
    cached or :func:`compile_pays_off`: a :class:`CompiledSliceNetwork`. Otherwise (a GPU, ``off``,
    a small volume, a network that does not compile) ``network`` itself; a failed compilation
    warns and falls back to the eager network.
    """
    mode = cpu_compile_mode(mode)
    if device.type != "cpu" or mode == "off" or isinstance(network, CompiledSliceNetwork):
        return network
    if mode == "auto" and not (
        isinstance(network, RestormerTrunk)  # the networks whose break-even was measured
        and (compile_pays_off(network, height, width, slices) or is_cached(network, height, width, cache_dir))
    ):
        return network
    try:
        return CompiledSliceNetwork(network, height, width, cache_dir)
    except Exception as err:  # a missing C++ compiler, an operator export cannot take: stay eager
        warnings.warn(f"compiling the network for the CPU failed ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); running eagerly", stacklevel=2)  # fmt: skip
        return network


def eager_network(model: nn.Module) -> nn.Module:
    """The eager network behind a :class:`CompiledSliceNetwork` (``model`` itself otherwise)."""
    return model.network if isinstance(model, CompiledSliceNetwork) else model
