"""Demo data: what ``monai-tat demo`` and the benchmarks restore.

- :mod:`monai_tat.demo.phantoms`: procedural anatomical phantoms (CT in HU, PET in SUV, T2-like MRI).
- :mod:`monai_tat.demo.samples`: the sample volumes of ``monai-tat demo``.

The recipe of the shipped demo weights (data preparation, training, model card) lives outside the
package, in the repository's ``recipes/demo_weights/``.
"""
