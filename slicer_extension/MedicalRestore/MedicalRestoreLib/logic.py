"""Restore a volume node with monai_tat in a background process, without the GUI.

:class:`RestoreLogic` needs MRML only: it works in Slicer (where the module's logic class adds a
Qt timer and PythonSlicer) and with the ``slicer-core`` package in plain Python (tests, scripts).

Data flow: the input node is written to a temporary NRRD by MRML's storage node; a background
process runs :mod:`MedicalRestoreLib.restore_volume_script` on it (``monai_tat.inference`` does
the work) and writes the result next to it; when, and only when, the process succeeded, the result
is read back into the output node, which takes the input's exact geometry. The input node is only
read.

Nothing here knows a task: the node's DICOM modality goes to the background process, which lets
``monai_tat``'s task registry resolve the task and reports it with its display window.

Units: the DICOM files behind a node loaded by Slicer's DICOM import (its instance UIDs, looked up
in the DICOM database) go to the background process too; for a PET, which Slicer loads in Bq/mL,
it computes the SUV factor from them, restores in SUV and gives the result back in Bq/mL, the
input's units. A PET in Bq/mL without DICOM files (or an SUV factor) is refused.

Confidence map: on request the background process also writes the confidence map of
``monai_tat.inference.confidence`` (8 restorations more); it is read back into a second volume
node, "<input> confidence", with the input's geometry, in the restored volume's units (recorded
in the node's :data:`CONFIDENCE_UNITS_ATTRIBUTE`), shown with a heat colour table: high = do not
trust fine detail there. Both results are read before either node is touched.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Optional

from MedicalRestoreLib import dependencies, restore_volume_script, volumes
from MedicalRestoreLib.background import BackgroundProcess
from MedicalRestoreLib.errors import RestoreInputError
from MedicalRestoreLib.job import DisplayWindow, LogCallback, ProgressCallback, RestoreJob
from MedicalRestoreLib.parameters import AMP_CHOICES, AUTO, RestoreParameters, parameter_node

NAMED_MODELS = ("tat", "amir")
OUTPUT_SUFFIX = " restored"
CONFIDENCE_SUFFIX = " confidence"
#: Node attributes of a confidence map: its units, and how to read it.
CONFIDENCE_UNITS_ATTRIBUTE = "MedicalRestore.ConfidenceUnits"
CONFIDENCE_READING_ATTRIBUTE = "MedicalRestore.ConfidenceReading"
CONFIDENCE_READING = "high = do not trust fine detail here; zero = every view agreed and nothing was invented"


def normalize_task(task: Optional[str]) -> str:
    """The panel's task label as a task name: ``"Auto"`` -> auto, ``"CT"`` -> ct ...

    Only lower-cased: the background process checks the name against monai_tat's task registry
    (an unknown name fails there, with the registry's list of tasks).
    """
    return (task or "").strip().lower() or AUTO


def normalize_model(model: Optional[str]) -> str:
    """``"TAT"`` / ``"AMIR"`` -> tat / amir; anything else must be an existing bundle folder or file."""
    text = (model or "").strip()
    if not text:
        raise RestoreInputError("No model chosen: choose TAT, AMIR, or a bundle directory / checkpoint file.")
    if text.lower() in NAMED_MODELS:
        return text.lower()
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise RestoreInputError(
            f"Model not found: {text}: choose TAT, AMIR, or an existing bundle directory / checkpoint file."
        )
    return path


def normalize_device(device: Optional[object]) -> str:
    """auto, cpu, cuda or cuda:N, the devices ``monai_tat.inference.devices.resolve_device`` accepts;
    a GPU id (``0`` or ``"1"``) means ``cuda:N``. Anything else (e.g. Apple's ``mps``) is refused here,
    before the background process starts."""
    text = str("auto" if device is None else device).strip().lower()
    if text in ("", "auto"):
        return "auto"
    if text in ("cpu", "cuda"):
        return text
    if text == "gpu":
        return "cuda"
    index = text.split(":", 1)[1] if text.startswith(("cuda:", "gpu:")) else text
    if index.isdigit():
        return f"cuda:{int(index)}"
    raise RestoreInputError(
        f"Unknown device '{device}': monai-tat runs on auto, cpu, or an NVIDIA GPU (CUDA) given by its id "
        "such as 0 or cuda:1."
    )


def normalize_amp(amp: Optional[str], device: str) -> str:
    """Mixed precision: none (float32), bf16 or fp16; half precision is CUDA only, so the CPU refuses it."""
    text = (amp or "none").strip().lower()
    if text not in AMP_CHOICES:
        raise RestoreInputError(f"Unknown precision '{amp}': choose {', '.join(AMP_CHOICES)}.")
    if text != "none" and device == "cpu":
        raise RestoreInputError(
            f"Half precision ({text}) runs on a CUDA GPU only: choose precision none for the CPU, "
            "or device auto / a GPU id."
        )
    return text


def normalize_batch_size(batch_size: Optional[int]) -> Optional[int]:
    """None or 0 means automatic; otherwise a positive number of slices per batch."""
    if batch_size in (None, 0):
        return None
    if not isinstance(batch_size, int) or batch_size < 0:
        raise RestoreInputError(f"Batch size must be a positive whole number (0 = automatic), got {batch_size!r}.")
    return batch_size


class RestoreLogic:
    """Restores scalar volume nodes with TAT / AMIR through ``monai_tat`` in a background process.

    Args:
        python_executable: Python that runs the background script (default: this one; Slicer's
            module logic passes PythonSlicer).
        script_path: the background script (default: the one in this package).
        env: environment of the background process (default: this process's).
    """

    #: ``uid -> DICOM file`` used to find the files behind a node (None: Slicer's DICOM database).
    dicom_file_for_instance: Optional[Callable[[str], Optional[str]]] = None

    def __init__(
        self,
        python_executable: Optional[str] = None,
        script_path: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ):
        self.python_executable = python_executable or sys.executable
        self.script_path = script_path or os.path.abspath(restore_volume_script.__file__)
        self.env = env

    # -- checks -----------------------------------------------------------------------------

    @staticmethod
    def missing_dependencies() -> List[str]:
        """Third-party packages the background process needs and this Python lacks: ``"torch"`` and
        lines of the module's ``Resources/requirements.txt`` (monai_tat ships with the module)."""
        return dependencies.missing_packages()

    @staticmethod
    def parameters(scene) -> RestoreParameters:
        """The module's parameter node in ``scene`` (created with defaults when missing)."""
        return parameter_node(scene)

    @staticmethod
    def default_output_name(input_node) -> str:
        """``"<input> restored"``."""
        return f"{input_node.GetName()}{OUTPUT_SUFFIX}"

    @staticmethod
    def default_confidence_name(input_node) -> str:
        """``"<input> confidence"``."""
        return f"{input_node.GetName()}{CONFIDENCE_SUFFIX}"

    # -- running ----------------------------------------------------------------------------

    def process(
        self,
        inputNode,
        outputNode=None,
        task: Optional[str] = "auto",
        model: Optional[str] = "tat",
        device: Optional[object] = "auto",
        wait: bool = True,
        batch_size: Optional[int] = None,
        self_ensemble: bool = False,
        amp: Optional[str] = "none",
        suv_factor: Optional[float] = None,
        confidence_map: bool = False,
        progress_callback: Optional[ProgressCallback] = None,
        log_callback: Optional[LogCallback] = None,
        finished_callback: Optional[Callable[[RestoreJob], None]] = None,
    ) -> RestoreJob:
        """Restore ``inputNode`` into ``outputNode`` (a new "<input> restored" node when None).

        Args:
            inputNode: a 3D ``vtkMRMLScalarVolumeNode`` in a scene; only read.
            outputNode: scalar volume node to fill, or None to create one when the result is in.
                It is changed only once the restoration succeeded.
            task: auto or a task name of monai_tat's registry (any case: ``"CT"`` means ct).
                Automatic uses the DICOM modality Slicer recorded for the volume, then the
                intensities; a task that contradicts the recorded modality fails.
            model: tat, amir, a bundle directory or a checkpoint file.
            device: auto, cpu, a GPU id (0, 1, ...) or cuda:N.
            wait: block until the result is in the scene (True), or return at once (False) and
                let the caller call ``job.poll()`` from the scene's thread (Slicer: a QTimer).
            batch_size: slices per batch, None / 0 for automatic.
            self_ensemble: average the network over the 8 flips / transpositions of each slice
                (a little better, 8x slower).
            amp: none (float32), bf16 or fp16: half precision on a CUDA GPU (refused with the CPU).
            suv_factor: a PET in Bq/mL without DICOM files: SUV = value x ``suv_factor``. A PET
                loaded from DICOM gets its factor from its files; either way the result is given
                back in Bq/mL.
            confidence_map: also compute the confidence map (8 restorations more) and add it as a
                new volume node "<input> confidence" (``job.confidence_node``), same geometry as the
                input, in the restored volume's units.
            progress_callback: ``(done, total, seconds_left)`` after each batch of slices.
            log_callback: each log line of the background process.
            finished_callback: the job, once it succeeded, failed or was cancelled.

        Returns:
            The :class:`RestoreJob`; ``job.output_node`` is the restored volume once it succeeded
            (and ``job.confidence_node`` its confidence map, when asked for).

        Raises:
            RestoreInputError: before anything starts, for a missing / 2D / 4D / non-scalar input,
                an unknown model or device, or missing packages; with ``wait=True`` also when the
                background process refused the input (an unknown task, a task the modality
                contradicts, a checkpoint of another architecture, a PET in Bq/mL without its SUV
                factor, a CT not in HU).
            RestoreError: with ``wait=True``, when the restoration failed otherwise.
        """
        volumes.check_input_volume(inputNode)
        scene = inputNode.GetScene()
        if scene is None:
            raise RestoreInputError(f"'{inputNode.GetName()}' is not in a scene: add it to the scene first.")
        if outputNode is not None:
            if outputNode is inputNode:
                raise RestoreInputError(
                    "The output volume is the input volume; the input is never overwritten: "
                    "choose another output volume or create a new one."
                )
            if not outputNode.IsA("vtkMRMLScalarVolumeNode") or outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise RestoreInputError(
                    f"Output '{outputNode.GetName()}' is a {outputNode.GetClassName()}: choose a scalar volume."
                )
        task_name = normalize_task(task)
        modality = volumes.dicom_modality(inputNode)
        model_spec = normalize_model(model)
        device_name = normalize_device(device)
        precision = normalize_amp(amp, device_name)
        batch = normalize_batch_size(batch_size)
        missing = self.missing_dependencies()
        if missing:
            raise RestoreInputError(
                f"Missing Python packages: {', '.join(missing)}; install them (the module offers to on "
                "Restore) and try again."
            )

        source_files = volumes.dicom_files(inputNode, self.dicom_file_for_instance)

        workdir = tempfile.mkdtemp(prefix="MedicalRestore-")
        input_path = os.path.join(workdir, "input.nrrd")
        output_path = os.path.join(workdir, "restored.nrrd")
        confidence_path = os.path.join(workdir, "confidence.nrrd") if confidence_map else None
        try:
            volumes.write_volume_file(inputNode, input_path)
            files_list = None
            if source_files:
                files_list = os.path.join(workdir, "dicom_files.txt")
                with open(files_list, "w", encoding="utf-8") as listing:
                    listing.write("\n".join(source_files) + "\n")
            command = self.build_command(
                input_path, output_path, task_name, model_spec, device_name, batch, modality=modality,
                self_ensemble=bool(self_ensemble), amp=precision, dicom_files_list=files_list,
                suv_factor=suv_factor, confidence_path=confidence_path,
            )
            background = BackgroundProcess(command, env=self.env, cwd=workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

        output_name = self.default_output_name(inputNode)
        confidence_name = self.default_confidence_name(inputNode)

        def deliver(path: str, final_task: Optional[str], window: DisplayWindow):
            output, job.confidence_node = self._deliver(
                path, inputNode, outputNode, output_name, final_task, window,
                confidence_path=confidence_path, confidence_name=confidence_name, confidence_units=job.confidence_units,
            )
            return output

        job = RestoreJob(
            background,
            workdir,
            output_path,
            deliver,
            progress_callback=progress_callback,
            log_callback=log_callback,
            finished_callback=finished_callback,
        )
        job.add_log("Command: " + " ".join(command))
        if wait:
            try:
                job.wait()
            except BaseException:  # e.g. Ctrl+C in a console: leave no process behind
                job.cancel()
                raise
            job.raise_for_state()
        else:
            self.start_polling(job)
        return job

    def process_parameters(self, parameters: RestoreParameters, wait: bool = False, **callbacks) -> RestoreJob:
        """Restore what the parameter node holds (the panel's state); see :meth:`process`.

        Args:
            parameters: the module's parameter node (:meth:`parameters`).
            wait: as in :meth:`process`.
            callbacks: ``progress_callback``, ``log_callback``, ``finished_callback`` of :meth:`process`.
        """
        return self.process(
            parameters.input_volume,
            parameters.output_volume,
            parameters.task,
            parameters.model_spec,
            parameters.device,
            wait=wait,
            batch_size=parameters.batch_size,
            self_ensemble=parameters.self_ensemble,
            amp=parameters.amp,
            confidence_map=parameters.confidence_map,
            **callbacks,
        )

    def build_command(
        self,
        input_path: str,
        output_path: str,
        task: str,
        model: str,
        device: str,
        batch_size: Optional[int] = None,
        modality: Optional[str] = None,
        self_ensemble: bool = False,
        amp: str = "none",
        dicom_files_list: Optional[str] = None,
        suv_factor: Optional[float] = None,
        confidence_path: Optional[str] = None,
    ) -> List[str]:
        """The background process's command line (``modality``: the DICOM modality, when recorded;
        ``dicom_files_list``: a text file naming the DICOM files behind the input, one per line;
        ``confidence_path``: where the confidence map goes, when one is asked for)."""
        command = [
            self.python_executable,
            self.script_path,
            "--input",
            input_path,
            "--output",
            output_path,
            "--task",
            task,
            "--model",
            model,
            "--device",
            device,
        ]
        if modality:
            command += ["--modality", modality]
        if batch_size is not None:
            command += ["--batch-size", str(batch_size)]
        if self_ensemble:
            command.append("--self-ensemble")
        if amp != "none":
            command += ["--amp", amp]
        if dicom_files_list:
            command += ["--dicom-files", dicom_files_list]
        if suv_factor is not None:
            command += ["--suv-factor", repr(float(suv_factor))]
        if confidence_path:
            command += ["--confidence", confidence_path]
        return command

    def start_polling(self, job: RestoreJob) -> None:
        """Arrange for ``job.poll()`` to be called regularly; here the caller does (Slicer: a QTimer)."""

    def _deliver(
        self, result_path: str, input_node, output_node, output_name: str, task: Optional[str], window: DisplayWindow,
        confidence_path: Optional[str] = None, confidence_name: Optional[str] = None,
        confidence_units: Optional[str] = None,
    ):
        """Read the finished result (and confidence map) into the output node (created now when there
        is none) and a new confidence node; returns ``(output node, confidence node or None)``."""
        scene = input_node.GetScene()
        if scene is None:
            raise RestoreInputError("The input volume was removed from the scene while it was being restored.")
        result = volumes.read_volume_file(result_path)
        confidence = volumes.read_volume_file(confidence_path) if confidence_path else None
        # Both grids are checked before any node changes: a bad map must not leave a half result.
        voxels = volumes.voxels_on_grid(result, input_node)
        confidence_voxels = volumes.voxels_on_grid(confidence, input_node) if confidence is not None else None
        if output_node is None or output_node.GetScene() is None:
            output_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(output_name))
            volumes.place_beside(output_node, input_node)
        volumes.fill_output_voxels(output_node, voxels, input_node)
        volumes.apply_task_display(output_node, task, window, reference=input_node)
        confidence_node = None
        if confidence_voxels is not None:
            confidence_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                                      scene.GenerateUniqueName(confidence_name or "confidence"))
            volumes.place_beside(confidence_node, input_node)
            volumes.fill_output_voxels(confidence_node, confidence_voxels, input_node)
            confidence_node.SetAttribute(CONFIDENCE_UNITS_ATTRIBUTE, confidence_units or "")
            confidence_node.SetAttribute(CONFIDENCE_READING_ATTRIBUTE, CONFIDENCE_READING)
            volumes.apply_heat_display(confidence_node)
        return output_node, confidence_node
