"""The module's parameter node: the panel's state, kept in the scene and saved with it.

Slicer modules keep what their panel shows in a parameter node (a ``vtkMRMLScriptedModuleNode``
tagged with the module name), so that a saved scene reopens with the same input, task and model
and the panel always shows the scene's state. :class:`RestoreParameters` gives that node typed
attributes; it needs MRML only (Slicer or ``slicer-core``), no Qt, and is what the widget syncs
with and the logic runs from.

The task is stored as the name the task registry of ``monai_tat`` uses (the panel's label
lower-cased); it is checked there, by the background process, not here.
"""

from __future__ import annotations

from typing import Callable, Dict, Generic, Optional, TypeVar

MODULE_NAME = "MedicalRestore"
PARAMETER_NODE_CLASS = "vtkMRMLScriptedModuleNode"

AUTO = "auto"
#: Labels of the panel's task choices; the stored value is the label lower-cased ("auto", "ct" ...).
TASK_CHOICES = ("Auto", "CT", "PET", "MRI")
#: Labels of the demo models; the stored value is the label lower-cased.
MODEL_CHOICES = ("TAT", "AMIR")
MODEL_FILE = "file"  # stored model choice: the bundle folder / checkpoint in ``model_path``
MODEL_FILE_CHOICE = "Bundle directory or checkpoint file"
DEVICE_CHOICES = ("auto", "cpu", "cuda:0")
#: Mixed precision choices (``monai-tat restore --amp``): float32, or half precision on a CUDA GPU.
AMP_CHOICES = ("none", "bf16", "fp16")
#: The panel's label of each setting ``monai_tat.errors.UserInputError.setting`` can name.
SETTING_LABELS: Dict[str, str] = {"task": "Task", "model": "Model", "device": "Device", "batch_size": "Batch size"}

T = TypeVar("T")


class _Parameter(Generic[T]):
    """A typed attribute stored as text under ``key`` in the parameter node; ``default`` when unset."""

    def __init__(self, key: str, default: T, parse: Callable[[str], T], to_text: Callable[[T], str] = str):
        self.key = key
        self.default = default
        self._parse = parse
        self._to_text = to_text

    def __get__(self, parameters: Optional["RestoreParameters"], owner=None):
        if parameters is None:
            return self
        text = parameters.node.GetParameter(self.key)
        if text == "":
            return self.default
        try:
            return self._parse(text)
        except ValueError:  # a hand-edited scene: fall back rather than break the panel
            return self.default

    def __set__(self, parameters: "RestoreParameters", value: Optional[T]) -> None:
        # SetParameter fires ModifiedEvent only when the text changes, so the GUI sync cannot loop.
        parameters.node.SetParameter(self.key, self._to_text(self.default if value is None else value))


class _NodeReference:
    """A node of the scene, stored as a node reference under ``role`` (None when unset)."""

    def __init__(self, role: str):
        self.role = role

    def __get__(self, parameters: Optional["RestoreParameters"], owner=None):
        if parameters is None:
            return self
        return parameters.node.GetNodeReference(self.role)

    def __set__(self, parameters: "RestoreParameters", node) -> None:
        parameters.node.SetNodeReferenceID(self.role, node.GetID() if node is not None else None)


def _flag(text: str) -> bool:
    """A stored true / false (anything else is a hand-edited scene: ValueError, the default is used)."""
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(text)
    return value == "true"


def _name(text: str) -> str:
    return text.strip().lower()


class RestoreParameters:
    """Typed view of the module's parameter node.

    Attributes:
        input_volume: the scalar volume node to restore.
        output_volume: the scalar volume node to fill, or None for a new "<input> restored" node.
        task: ``"auto"`` or a task name of the registry (``"ct"`` ...), lower-case.
        model: ``"tat"``, ``"amir"`` or :data:`MODEL_FILE`.
        model_path: the bundle folder or checkpoint file used when ``model`` is :data:`MODEL_FILE`.
        device: ``"auto"``, ``"cpu"``, a GPU id or ``"cuda:N"``.
        batch_size: slices per batch; 0 means automatic.
        self_ensemble: average the network over the 8 flips / transpositions of each slice
            (a little better, 8x slower).
        amp: ``"none"`` (float32), ``"bf16"`` or ``"fp16"``: half precision on a CUDA GPU.
        confidence_map: also add the confidence map as a second volume, "<input> confidence"
            (8 restorations more).

    Args:
        node: the ``vtkMRMLScriptedModuleNode`` holding the values (see :func:`parameter_node`).
    """

    input_volume = _NodeReference("InputVolume")
    output_volume = _NodeReference("OutputVolume")
    task = _Parameter("Task", AUTO, _name, _name)
    model = _Parameter("Model", "tat", _name, _name)
    model_path = _Parameter("ModelPath", "", str.strip, lambda text: str(text).strip())
    device = _Parameter("Device", AUTO, _name, lambda value: _name(str(value)))
    batch_size = _Parameter("BatchSize", 0, int, lambda value: str(int(value)))
    self_ensemble = _Parameter("SelfEnsemble", False, _flag, lambda value: "true" if value else "false")
    amp = _Parameter("Precision", "none", _name, _name)
    confidence_map = _Parameter("ConfidenceMap", False, _flag, lambda value: "true" if value else "false")

    def __init__(self, node):
        self.node = node

    @property
    def model_spec(self) -> str:
        """What the logic's ``model`` argument takes: ``"tat"``, ``"amir"`` or the file / folder path."""
        return self.model_path if self.model == MODEL_FILE else self.model

    def set_defaults(self) -> None:
        """Write the default of every value the node does not hold yet (a new node, an old scene)."""
        present = set(self.node.GetParameterNames())
        was_modifying = self.node.StartModify()
        for name, attribute in vars(type(self)).items():
            if isinstance(attribute, _Parameter) and attribute.key not in present:
                setattr(self, name, attribute.default)
        self.node.EndModify(was_modifying)

    def select_default_input(self) -> None:
        """Choose the scene's first scalar volume (label maps excluded) as input when none is chosen."""
        scene = self.node.GetScene()
        if self.input_volume is not None or scene is None:
            return
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            candidate = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            if not candidate.IsA("vtkMRMLLabelMapVolumeNode"):
                self.input_volume = candidate
                return


def parameter_node(scene) -> RestoreParameters:
    """The module's parameter node in ``scene``, created with defaults when the scene has none.

    The node is the scene's singleton ``vtkMRMLScriptedModuleNode`` tagged with the module name,
    with a ``ModuleName`` attribute: the node Slicer's ``ScriptedLoadableModuleLogic.getParameterNode``
    finds and creates, so both always agree.
    """
    node = scene.GetSingletonNode(MODULE_NAME, PARAMETER_NODE_CLASS)
    if node is None:
        node = scene.CreateNodeByClass(PARAMETER_NODE_CLASS)
        node.UnRegister(None)  # CreateNodeByClass hands over a reference the scene now takes
        node.SetSingletonTag(MODULE_NAME)
        node.SetName(scene.GenerateUniqueName(MODULE_NAME))
        node.SetAttribute("ModuleName", MODULE_NAME)
        node = scene.AddNode(node)
    elif node.GetAttribute("ModuleName") != MODULE_NAME:
        node.SetAttribute("ModuleName", MODULE_NAME)  # closing a scene clears attributes of singletons
    parameters = RestoreParameters(node)
    parameters.set_defaults()
    return parameters
