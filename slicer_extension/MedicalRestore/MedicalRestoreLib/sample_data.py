"""Sample data: the demo phantoms of monai_tat as volume nodes, made locally (no download).

Slicer's Sample Data module lists them (``MedicalRestore.py`` registers one entry per task) so a
new user can load a degraded volume and try Restore at once. The phantom is drawn by the
library in a background Python (:mod:`MedicalRestoreLib.sample_data_script`), written to a
temporary NRRD and read back here with MRML only (Slicer or ``slicer-core``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional

from MedicalRestoreLib import restore_volume_script as protocol
from MedicalRestoreLib import volumes
from MedicalRestoreLib.errors import RestoreError, RestoreInputError

#: Node name and Sample Data label of each task's phantom.
SAMPLES: Dict[str, str] = {
    "ct": "PhantomLowDoseCT",
    "pet": "PhantomLowDosePET",
    "mri": "PhantomLowResolutionMRI",
}
SAMPLE_CATEGORY = "Medical Restore"
#: Run as a file, never imported here (it imports the restoration script as a top-level module).
SAMPLE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data_script.py")


def generate_sample_volume(
    scene,
    task: str,
    python_executable: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    size: int = 128,
    slices: int = 4,
    timeout_s: float = 600.0,
):
    """Add the degraded demo phantom of ``task`` to ``scene`` as a new scalar volume node.

    Args:
        scene: the MRML scene.
        task: ``"ct"``, ``"pet"`` or ``"mri"``.
        python_executable: Python with torch and the packages of ``Resources/requirements.txt``
            (PythonSlicer in Slicer; this Python by default).
        env: environment of that Python.
        size, slices: in-plane matrix (PET: 2/3 of it) and number of slices.

    Returns:
        The new node, named after :data:`SAMPLES`, with its DICOM modality recorded (so Auto
        finds the task) and monai_tat's geometry.

    Raises:
        RestoreInputError: an unknown task, or the library refused (missing packages, another
            monai_tat on the path).
        RestoreError: the phantom could not be made.
    """
    if task not in SAMPLES:
        raise RestoreInputError(f"No sample for task '{task}': choose one of {', '.join(SAMPLES)}.")
    workdir = tempfile.mkdtemp(prefix="MedicalRestoreSample-")
    try:
        path = os.path.join(workdir, f"{SAMPLES[task]}.nrrd")
        command = [
            python_executable or sys.executable, SAMPLE_SCRIPT,
            "--task", task, "--output", path, "--size", str(size), "--slices", str(slices),
        ]
        completed = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout_s, check=False
        )
        messages = [protocol.parse_message(line) for line in completed.stdout.splitlines()]
        messages = dict(message for message in messages if message is not None)
        if completed.returncode != protocol.EXIT_OK or protocol.DONE not in messages:
            reason = messages.get(protocol.ERROR) or (completed.stdout + completed.stderr).strip()[-500:]
            error = RestoreInputError if completed.returncode == protocol.EXIT_USER_ERROR else RestoreError
            raise error(f"The {task} sample could not be made: {reason}")
        loaded = volumes.read_volume_file(path)
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(SAMPLES[task]))
        node.CopyOrientation(loaded)
        node.SetAndObserveImageData(loaded.GetImageData())
        node.SetAttribute(volumes.DICOM_MODALITY_ATTRIBUTE, str(messages.get(protocol.MODALITY, "")))
        node.CreateDefaultDisplayNodes()
        return node
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
