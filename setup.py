"""Packaging for monai-tat: all-in-one medical image restoration (TAT, AMIR) for MONAI."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# The version lives in monai_tat/__init__.py only; the Slicer extension reads it there too.
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "monai_tat" / "__init__.py").read_text(), re.M).group(1)

# What only training needs (the bundles' train.json logs to TensorBoard): `pip install "monai-tat[train]"`.
# `python -m monai.bundle` inference needs fire and pytorch-ignite, so those stay in install_requires.
TRAIN_REQUIRES = ["tensorboard>=2.12"]

setup(
    name="monai-tat",
    version=VERSION,
    description="All-in-one medical image restoration (TAT, AMIR, Restormer) as MONAI networks, "
    "transforms, bundles, a CLI and a 3D Slicer extension",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["monai_tat", "monai_tat.*"]),
    include_package_data=True,
    package_data={"monai_tat": ["weights/*.safetensors", "weights/*.json"]},
    install_requires=[
        "torch>=2.1",
        "monai>=1.4",
        "numpy>=1.24",
        "SimpleITK>=2.2",
        "nibabel>=5.0",
        "pydicom>=2.4",
        "scikit-image>=0.21",
        "scipy>=1.10",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "pillow>=9.0",
        "fire>=0.5",
        "pytorch-ignite>=0.4.11",
    ],
    extras_require={
        "train": TRAIN_REQUIRES,
        # The tests run bundle training, so they need the training extras as well.
        "test": TRAIN_REQUIRES + [
            "pytest>=7.0",
            "hypothesis>=6.0",
            "onnx>=1.15",
            "onnxscript>=0.1",
            "jsonschema>=4.0",
            "onnxruntime>=1.17",
            "slicer-core>=5.8",
        ],
    },
    entry_points={"console_scripts": ["monai-tat=monai_tat.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
)
