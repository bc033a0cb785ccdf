"""MedicalRestore: restore a CT, PET or MRI volume with TAT or AMIR (monai-tat) in 3D Slicer.

The module holds no model code. Its logic (``MedicalRestoreLib``, importable with MRML alone)
writes the input volume to a temporary NRRD, runs ``monai_tat.inference`` on it in a PythonSlicer
background process, and reads the result back into a new volume once it is complete; this file
adds the Qt GUI, a Qt timer that follows the background process, and the self-test.

The panel's state lives in the module's parameter node (``MedicalRestoreLib.parameters``), which
is saved with the scene; the widget only mirrors it. ``monai_tat`` ships inside the extension,
next to this file, but is never imported here: it needs torch, which may not be installed yet, and
the background process is where it runs (and where its version is checked).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import ctk
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedicalRestoreLib import (
    SUCCEEDED,
    RestoreInputError,
    RestoreLogic,
    dependencies,
    sample_data,
    testing,
    volumes,
)
from MedicalRestoreLib.parameters import (
    AMP_CHOICES,
    DEVICE_CHOICES,
    MODEL_CHOICES,
    MODEL_FILE,
    MODEL_FILE_CHOICE,
    SETTING_LABELS,
    TASK_CHOICES,
    RestoreParameters,
)

POLL_INTERVAL_MS = 200


class MedicalRestore(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Medical Restore"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []
        self.parent.contributors = ["monai-tat contributors"]
        self.parent.helpText = (
            "Restores a CT (low-dose denoising), PET (low-dose to full-dose synthesis) or MRI "
            "(4x super-resolution) volume with the all-in-one TAT or AMIR networks of monai-tat. "
            "The network runs in a background process, on the GPU when there is one; Slicer stays "
            "responsive and the run can be cancelled. The restored volume appears as a new volume "
            "with the input's geometry; the input is never changed. "
            "Units: a CT must be in Hounsfield units (as Slicer loads CT DICOM). A PET loaded with the DICOM "
            "module is in Bq/mL: its SUV factor is read from the DICOM files behind it, the network works in "
            "SUV, and the restored volume is given back in Bq/mL, like the input. A PET in Bq/mL that did not "
            "come from the DICOM database (a NIfTI or NRRD file) is refused: load it from DICOM, or convert it "
            "to SUV first. A CT in stored values (air near 0 instead of -1000) is refused. "
            "Back to DICOM: the restored volume is placed in the input's study in the Data module; to send it "
            "to a PACS, right-click it there and choose Export to DICOM (it becomes a new series of that study), "
            "or use monai-tat restore SERIES OUT --format dicom outside Slicer."
        )
        self.parent.acknowledgementText = (
            "TAT: Task-aware Adaptive Transformer (MICCAI 2025). AMIR: All-in-one Medical Image "
            "Restoration via task-adaptive routing (MICCAI 2024). Built on MONAI and 3D Slicer."
        )
        # The demo phantoms in the Sample Data module, once every module is loaded.
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """List the demo phantoms (low-dose CT, low-dose PET, low-resolution MRI) in Sample Data.

    They are drawn by monai_tat on this computer when clicked (nothing is downloaded), after the
    first-use installation of torch and the packages the library needs.
    """
    import SampleData

    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MedicalRestore.png")
    for task, name in sample_data.SAMPLES.items():
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=sample_data.SAMPLE_CATEGORY,
            sampleName=name,
            nodeNames=[name],
            thumbnailFileName=icon,
            # Slicer passes the source to the downloader (older versions pass nothing).
            customDownloader=lambda *source, task=task: loadSamplePhantom(task),
        )


def loadSamplePhantom(task: str):
    """Draw the phantom of ``task`` with monai_tat and show it; returns the new volume node (or None)."""
    logic = MedicalRestoreLogic()
    with slicer.util.tryWithErrorDisplay(f"The {task} sample could not be made.", waitCursor=True):
        if not logic.ensure_dependencies():
            return None
        node = sample_data.generate_sample_volume(
            slicer.mrmlScene, task, python_executable=logic.python_executable, env=logic.env
        )
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node
    return None


def python_slicer_executable() -> str:
    """PythonSlicer, the launcher that runs Python with Slicer's environment (sys.executable otherwise)."""
    return shutil.which("PythonSlicer") or sys.executable


class MedicalRestoreLogic(ScriptedLoadableModuleLogic, RestoreLogic):
    """:class:`MedicalRestoreLib.RestoreLogic` with PythonSlicer and a Qt timer for ``wait=False``.

    Usage from the Python console::

        logic = slicer.util.getModuleLogic("MedicalRestore")
        job = logic.process(getNode("CTChest"), None, "ct", "/path/to/checkpoint.pt", "auto")
        restored = job.output_node

    or, with what the module panel shows::

        job = logic.process_parameters(logic.getParameterNode(), wait=True)
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        RestoreLogic.__init__(
            self, python_executable=python_slicer_executable(), env=slicer.util.startupEnvironment()
        )
        self._timers = {}

    def getParameterNode(self) -> RestoreParameters:
        """The module's parameter node in the current scene, with typed attributes."""
        return self.parameters(slicer.mrmlScene)

    def start_polling(self, job) -> None:
        """Poll the job from Slicer's main thread every 200 ms until it ends."""
        timer = qt.QTimer()
        timer.setInterval(POLL_INTERVAL_MS)

        def tick():
            if not job.poll():
                timer.stop()
                self._timers.pop(id(job), None)

        timer.timeout.connect(tick)
        self._timers[id(job)] = timer
        timer.start()

    def install_plan(self):
        """Steps that install the missing packages on this Slicer (empty when nothing is missing)."""
        missing = self.missing_dependencies()
        if not missing:
            return []
        try:
            import PyTorchUtils  # noqa: F401 - the PyTorch extension's module

            has_pytorch_extension = True
        except ImportError:
            has_pytorch_extension = False
        return dependencies.build_install_plan(
            missing, (slicer.app.majorVersion, slicer.app.minorVersion), has_pytorch_extension
        )

    def ensure_dependencies(self) -> bool:
        """Offer to install torch and the third-party packages when missing; never without the user's OK."""
        plan = self.install_plan()
        return dependencies.install(plan, slicer.util.confirmOkCancelDisplay, slicer)


def select_combo_item(combo, value: str, label: str) -> None:
    """Make the item whose label lower-cased is ``value`` current; add ``label`` when there is none."""
    for index in range(combo.count):
        if combo.itemText(index).lower() == value:
            combo.currentIndex = index
            return
    combo.addItem(label)  # e.g. a task of a newer monai_tat, from a saved scene
    combo.currentIndex = combo.count - 1


class MedicalRestoreWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: input, task, model, device, batch size, Restore / Cancel, progress, log.

    Every choice is stored in the module's parameter node as soon as it is made
    (:meth:`updateParameterNodeFromGUI`), and the panel shows the node's values whenever the node
    changes (:meth:`updateGUIFromParameterNode`): a loaded scene brings its choices back.
    """

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self._parameters = None
        self._updatingGUIFromParameterNode = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedicalRestore.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedicalRestoreLogic()

        self.ui.taskComboBox.addItems(list(TASK_CHOICES))
        self.ui.modelComboBox.addItems([*MODEL_CHOICES, MODEL_FILE_CHOICE])
        self.ui.deviceComboBox.addItems(list(DEVICE_CHOICES))
        self.ui.ampComboBox.addItems(list(AMP_CHOICES))
        # Checkpoints are files, bundles are folders.
        self.ui.modelPathLineEdit.filters = (
            ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Dirs | ctk.ctkPathLineEdit.Readable
        )
        self.ui.modelPathLineEdit.settingKey = "MedicalRestore/ModelPath"  # recent paths, across sessions

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Any change in the panel goes to the parameter node.
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.outputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.taskComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.deviceComboBox.connect("currentTextChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.batchSizeSpinBox.connect("valueChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.selfEnsembleCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.confidenceMapCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.ampComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

        self.initializeParameterNode()

    def cleanup(self):
        self.cancelJob()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # The panel is hidden: stop following the node (a running job keeps its own callbacks).
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node <-> GUI ----------------------------------------------------------------

    def initializeParameterNode(self):
        """Follow the scene's parameter node, choosing a default input and model path when unset."""
        parameters = self.logic.getParameterNode()
        parameters.select_default_input()
        if not parameters.model_path and self.ui.modelPathLineEdit.currentPath:
            parameters.model_path = self.ui.modelPathLineEdit.currentPath  # the last path used
        self.setParameterNode(parameters)

    def setParameterNode(self, parameters):
        if self._parameters is not None:
            self.removeObserver(self._parameters.node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameters = parameters
        if self._parameters is not None:
            self.addObserver(self._parameters.node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        """Show the parameter node's values; widgets' change signals do not write them back."""
        if self._parameters is None or self._updatingGUIFromParameterNode:
            self.updateButtons()
            return
        parameters = self._parameters
        self._updatingGUIFromParameterNode = True
        try:
            self.ui.inputSelector.setCurrentNode(parameters.input_volume)
            self.ui.outputSelector.setCurrentNode(parameters.output_volume)
            select_combo_item(self.ui.taskComboBox, parameters.task, parameters.task.upper())
            if parameters.model == MODEL_FILE:
                self.ui.modelComboBox.currentText = MODEL_FILE_CHOICE
            else:
                select_combo_item(self.ui.modelComboBox, parameters.model, parameters.model.upper())
            self.ui.modelPathLineEdit.currentPath = parameters.model_path
            self.ui.deviceComboBox.currentText = parameters.device
            self.ui.batchSizeSpinBox.value = parameters.batch_size
            self.ui.selfEnsembleCheckBox.checked = parameters.self_ensemble
            self.ui.confidenceMapCheckBox.checked = parameters.confidence_map
            select_combo_item(self.ui.ampComboBox, parameters.amp, parameters.amp)
        finally:
            self._updatingGUIFromParameterNode = False
        self.updateButtons()

    def updateParameterNodeFromGUI(self, *_):
        """Store the panel's values in the parameter node, in one modification."""
        if self._parameters is None or self._updatingGUIFromParameterNode:
            return
        parameters = self._parameters
        was_modifying = parameters.node.StartModify()
        parameters.input_volume = self.ui.inputSelector.currentNode()
        parameters.output_volume = self.ui.outputSelector.currentNode()
        parameters.task = self.ui.taskComboBox.currentText  # the label lower-cased is the task name
        model_choice = self.ui.modelComboBox.currentText
        parameters.model = MODEL_FILE if model_choice == MODEL_FILE_CHOICE else model_choice
        parameters.model_path = self.ui.modelPathLineEdit.currentPath
        parameters.device = self.ui.deviceComboBox.currentText
        parameters.batch_size = self.ui.batchSizeSpinBox.value
        parameters.self_ensemble = self.ui.selfEnsembleCheckBox.checked
        parameters.confidence_map = self.ui.confidenceMapCheckBox.checked
        parameters.amp = self.ui.ampComboBox.currentText
        parameters.node.EndModify(was_modifying)

    # -- running -------------------------------------------------------------------------------

    def cancelJob(self):
        if self.job is not None and self.job.running:
            self.job.cancel()

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def updateButtons(self):
        """Enable the choices and the Restore / Cancel button as the job and the inputs allow."""
        running = self.running
        for widget in (
            self.ui.inputSelector,
            self.ui.taskComboBox,
            self.ui.modelComboBox,
            self.ui.modelPathLineEdit,
            self.ui.deviceComboBox,
            self.ui.batchSizeSpinBox,
            self.ui.selfEnsembleCheckBox,
            self.ui.confidenceMapCheckBox,
            self.ui.ampComboBox,
            self.ui.outputSelector,
        ):
            widget.enabled = not running and self._parameters is not None
        self.ui.modelPathLineEdit.visible = self.ui.modelComboBox.currentText == MODEL_FILE_CHOICE
        if running:
            self.ui.applyButton.text = "Cancel"
            self.ui.applyButton.toolTip = "Stop the restoration; no output volume is created."
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = "Restore"
            hasInput = self._parameters is not None and self._parameters.input_volume is not None
            self.ui.applyButton.enabled = hasInput
            self.ui.applyButton.toolTip = (
                "Restore the input volume into a new volume." if hasInput else "Select an input volume first."
            )

    def onApplyButton(self):
        if self.running:
            self.cancelJob()
            return
        with slicer.util.tryWithErrorDisplay("Restoration could not start.", waitCursor=True):
            if not self.logic.ensure_dependencies():
                self.appendLog("Restoration needs torch and the packages monai_tat uses; installation was declined.")
                return
            self.ui.logTextEdit.clear()
            self.ui.progressBar.maximum = 0  # busy indicator until the first slice is done
            self.ui.statusLabel.text = "Starting (loading torch and the model)..."
            if self._parameters.model == MODEL_FILE:
                self.ui.modelPathLineEdit.addCurrentPathToHistory()
            self.job = self.logic.process_parameters(
                self._parameters,
                wait=False,
                progress_callback=self.onProgress,
                log_callback=self.appendLog,
                finished_callback=self.onFinished,
            )
        self.updateButtons()

    def onProgress(self, done, total, secondsLeft):
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        if self.job is not None:
            self.ui.statusLabel.text = self.job.progress.describe()

    def appendLog(self, text):
        self.ui.logTextEdit.appendPlainText(text)

    def onFinished(self, job):
        self.updateButtons()
        if job.state == SUCCEEDED:
            names = " and ".join(f"'{node.GetName()}'" for node in (job.output_node, job.confidence_node) if node)
            self.ui.statusLabel.text = f"Done in {job.elapsed_s:.0f} s: {names}."
            self.ui.progressBar.maximum = max(self.ui.progressBar.maximum, 1)
            self.ui.progressBar.value = self.ui.progressBar.maximum
            if job.confidence_node is not None:  # the map over the result, half transparent
                slicer.util.setSliceViewerLayers(background=job.output_node, foreground=job.confidence_node,
                                                 foregroundOpacity=0.5, fit=True)
            else:
                slicer.util.setSliceViewerLayers(background=job.output_node, fit=True)
        else:
            self.ui.statusLabel.text = job.error
            self.ui.progressBar.maximum = 100
            self.ui.progressBar.value = 0
            if job.state != "cancelled":
                slicer.util.errorDisplay(job.error, detailedText="\n".join(job.log))
                self.focusSetting(job.setting)

    def focusSetting(self, setting):
        """Put the keyboard focus on the control of the setting the error names (if any)."""
        controls = {
            "task": self.ui.taskComboBox,
            "model": self.ui.modelComboBox,
            "device": self.ui.deviceComboBox,
            "batch_size": self.ui.batchSizeSpinBox,
        }
        if setting in SETTING_LABELS and setting in controls:
            if setting in ("device", "batch_size"):
                self.ui.advancedCollapsibleButton.collapsed = False
            controls[setting].setFocus()


class MedicalRestoreTest(ScriptedLoadableModuleTest):
    """Self-test in Slicer: a synthetic CT restored with a tiny TAT keeps its geometry.

    Needs torch and monai_tat in Slicer's Python (the module offers to install them).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.workdir = tempfile.mkdtemp(prefix="MedicalRestoreTest-")

    def tearDown(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def runTest(self):
        tests = (
            self.test_panel_follows_the_parameter_node,
            self.test_restore_keeps_geometry,
            self.test_cancel_leaves_no_output,
            self.test_clear_errors,
        )
        for test in tests:
            self.setUp()
            try:
                test()
            finally:
                self.tearDown()

    def _checkpoint(self):
        missing = MedicalRestoreLogic().missing_dependencies()
        if missing:
            self.skipTest(f"MedicalRestore self-test needs {', '.join(missing)}; open the module to install them.")
        return testing.save_tiny_checkpoint(os.path.join(self.workdir, "tiny_tat.pt"))

    def test_panel_follows_the_parameter_node(self):
        self.delayDisplay("Panel and parameter node stay in step")
        inputNode = testing.add_synthetic_ct(slicer.mrmlScene)
        slicer.util.selectModule("MedicalRestore")
        widget = slicer.modules.medicalrestore.widgetRepresentation().self()
        widget.initializeParameterNode()  # as on entering the module with this scene
        parameters = widget.logic.getParameterNode()
        self.assertEqual(parameters.input_volume, inputNode)  # the first volume is chosen
        self.assertEqual(widget.ui.inputSelector.currentNode(), inputNode)
        # Parameter node -> panel.
        parameters.task = "pet"
        parameters.batch_size = 3
        parameters.self_ensemble = True
        parameters.confidence_map = True
        self.assertEqual(widget.ui.taskComboBox.currentText, "PET")
        self.assertEqual(widget.ui.batchSizeSpinBox.value, 3)
        self.assertTrue(widget.ui.selfEnsembleCheckBox.checked)
        self.assertTrue(widget.ui.confidenceMapCheckBox.checked)
        # Panel -> parameter node.
        widget.ui.taskComboBox.currentText = "MRI"
        widget.ui.modelComboBox.currentText = "AMIR"
        widget.ui.deviceComboBox.currentText = "cpu"
        self.assertEqual((parameters.task, parameters.model, parameters.device), ("mri", "amir", "cpu"))
        self.assertEqual(parameters.node.GetAttribute("ModuleName"), "MedicalRestore")
        self.delayDisplay("Panel state is in the scene")

    def test_restore_keeps_geometry(self):
        self.delayDisplay("Restoring a synthetic CT with a tiny TAT")
        checkpoint = self._checkpoint()
        inputNode = testing.add_synthetic_ct(slicer.mrmlScene)
        before = slicer.util.arrayFromVolume(inputNode).copy()
        logic = MedicalRestoreLogic()
        job = logic.process(inputNode, None, "CT", checkpoint, "cpu", wait=True)
        output = job.output_node
        self.assertEqual(output.GetName(), "SyntheticCT restored")
        self.assertEqual(output.GetImageData().GetDimensions(), inputNode.GetImageData().GetDimensions())
        self.assertEqual(output.GetSpacing(), inputNode.GetSpacing())
        self.assertEqual(output.GetOrigin(), inputNode.GetOrigin())
        self.assertTrue((volumes.ijk_to_ras(output) == volumes.ijk_to_ras(inputNode)).all())
        self.assertTrue((slicer.util.arrayFromVolume(inputNode) == before).all())
        self.delayDisplay("Geometry kept, input untouched")

    def test_cancel_leaves_no_output(self):
        self.delayDisplay("Cancelling a restoration")
        checkpoint = self._checkpoint()
        inputNode = testing.add_synthetic_ct(slicer.mrmlScene)
        volumesBefore = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        job = MedicalRestoreLogic().process(inputNode, None, "ct", checkpoint, "cpu", wait=False)
        job.cancel()
        job.wait()
        self.assertEqual(job.state, "cancelled")
        self.assertIsNone(job.output_node)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), volumesBefore)
        self.delayDisplay("No output after Cancel")

    def test_clear_errors(self):
        self.delayDisplay("Checking error messages")
        logic = MedicalRestoreLogic()
        with self.assertRaisesRegex(RestoreInputError, "No input volume"):
            logic.process(None, None, "ct", "tat", "cpu")
        flat = testing.add_synthetic_ct(slicer.mrmlScene, name="OneSlice", shape_kji=(1, 32, 32))
        with self.assertRaisesRegex(RestoreInputError, "2D"):
            logic.process(flat, None, "ct", "tat", "cpu")
        # The task is checked by monai_tat's registry, in the background process.
        checkpoint = self._checkpoint()
        inputNode = testing.add_synthetic_ct(slicer.mrmlScene)
        with self.assertRaisesRegex(RestoreInputError, "unknown task 'ultrasound'"):
            logic.process(inputNode, None, "ultrasound", checkpoint, "cpu")
        inputNode.SetAttribute("DICOM.Modality", "CT")
        with self.assertRaisesRegex(RestoreInputError, "DICOM modality is CT.*Change the Task setting"):
            logic.process(inputNode, None, "MRI", checkpoint, "cpu")
        self.delayDisplay("Errors are clear")
