"""One entry point for the speed benchmarks: ``python -m monai_tat.benchmarks {engine,models,networks} ...``.

- ``engine``: the engine's own time and memory (a network that does nothing on a 512x512x200
  CT-like volume); table and ``--json`` figures (:mod:`monai_tat.benchmarks.engine_speed`).
- ``models``: seconds per volume with TAT / AMIR through the engine (:mod:`monai_tat.benchmarks.models_speed`).
- ``networks``: seconds per slice of the networks alone (:mod:`monai_tat.benchmarks.networks_speed`).
- ``drift``: PSNR of each fast mode (autocast, TorchScript, torch.compile) against float32 on the
  demo samples with the shipped weights (:mod:`monai_tat.benchmarks.quality_drift`).
- ``confidence``: how well the confidence map ranks patches by their error, on the demo samples or
  a datalist of pairs (:mod:`monai_tat.benchmarks.confidence`).
- ``gpu-check``: the prepared check of the GPU path in one table: CUDA tests, networks per size and
  precision, a forced out-of-memory, a 512x512x600 CT in 8 GB, the bundle on CUDA
  (:mod:`monai_tat.benchmarks.gpu_check`; ``--device cpu --quick`` is a dry run).
- ``cpu-levers``: every CPU speed lever tried (inductor with frozen weights, ahead-of-time
  compilation cached on disk, TorchScript freezing, oneDNN Graph), per slice, with compile time and
  max |diff| against eager, timed in interleaved rounds (:mod:`monai_tat.benchmarks.cpu_levers`).
- ``cpu-volumes``: seconds to restore a CT, an MRI and a PET volume on the CPU with the shipped
  networks, eager, first run (compiling) and second run (cached) (:mod:`monai_tat.benchmarks.cpu_levers`).
- ``train-loader``: seconds per batch of a bundle's training data loader, with and without a copy
  of each cached volume per sample, beside one network step (:mod:`monai_tat.benchmarks.train_loader`).
- ``cpu-profile``: one forward pass's CPU time operator by operator, and how much of it vendor
  kernels take (:mod:`monai_tat.benchmarks.cpu_profile`).

``python -m monai_tat.benchmarks SUBCOMMAND --help`` lists each one's options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SUBCOMMANDS = ("engine", "models", "networks", "drift", "confidence", "gpu-check", "cpu-levers", "cpu-volumes", "cpu-profile", "train-loader")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        print(__doc__.strip(), file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    command, rest = args[0], args[1:]
    if command == "engine":
        from monai_tat.benchmarks.engine_speed import engine_main

        return engine_main(rest)
    if command == "models":
        from monai_tat.benchmarks.models_speed import main as models_main

        return models_main(rest)
    if command == "gpu-check":
        from monai_tat.benchmarks.gpu_check import main as gpu_check_main

        return gpu_check_main(rest)
    if command == "drift":
        from monai_tat.benchmarks.quality_drift import main as drift_main

        return drift_main(rest)
    if command == "confidence":
        from monai_tat.benchmarks.confidence import main as confidence_main

        return confidence_main(rest)
    if command == "cpu-levers":
        from monai_tat.benchmarks.cpu_levers import levers_main

        return levers_main(rest)
    if command == "cpu-volumes":
        from monai_tat.benchmarks.cpu_levers import volumes_main

        return volumes_main(rest)
    if command == "train-loader":
        from monai_tat.benchmarks.train_loader import main as loader_main

        return loader_main(rest)
    if command == "cpu-profile":
        from monai_tat.benchmarks.cpu_profile import main as profile_main

        return profile_main(rest)
    from monai_tat.benchmarks import networks_speed

    networks_speed.main(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
