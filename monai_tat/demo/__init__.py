"""Demo data and the training of the shipped demo weights.

- :mod:`monai_tat.demo.phantoms`: procedural anatomical phantoms (CT in HU, PET in SUV, T2-like MRI).
- :mod:`monai_tat.demo.samples`: the sample volumes of ``monai-tat demo``.
- :mod:`monai_tat.demo.train`: the reproducible training script of ``monai_tat/weights/``.

Demo weights are trained on simulated phantoms only: not for clinical use (see MODEL_CARD.md).
"""
