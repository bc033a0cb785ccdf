"""The module's parameter node (its panel state) in real MRML scenes: defaults, types, save and load."""

from __future__ import annotations

import slicer

from MedicalRestoreLib import RestoreLogic, parameter_node, testing
from MedicalRestoreLib.parameters import (
    MODEL_CHOICES,
    MODEL_FILE,
    MODULE_NAME,
    SETTING_LABELS,
    TASK_CHOICES,
)


def scripted_module_nodes(scene) -> list:
    return [
        scene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode"))
    ]


def test_one_parameter_node_per_scene_holds_the_defaults(scene):
    parameters = RestoreLogic.parameters(scene)
    node = parameters.node
    # The node Slicer's ScriptedLoadableModuleLogic.getParameterNode() looks for.
    assert node.IsA("vtkMRMLScriptedModuleNode") and node.GetScene() is scene
    assert node.GetSingletonTag() == MODULE_NAME and node.GetAttribute("ModuleName") == MODULE_NAME
    assert scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode") is node
    # Defaults are written into the node, so a saved scene holds them too.
    assert {name: node.GetParameter(name) for name in node.GetParameterNames()} == {
        "Task": "auto",
        "Model": "tat",
        "ModelPath": "",
        "Device": "auto",
        "BatchSize": "0",
        "SelfEnsemble": "false",
        "Precision": "none",
        "ConfidenceMap": "false",
    }
    assert (parameters.task, parameters.model, parameters.device, parameters.batch_size) == ("auto", "tat", "auto", 0)
    assert parameters.self_ensemble is False and parameters.confidence_map is False
    assert parameters.input_volume is None and parameters.output_volume is None
    assert parameters.model_spec == "tat"

    parameters.task = "pet"
    again = parameter_node(scene)  # found again, not created twice, values kept
    assert again.node is node and again.task == "pet"
    assert scripted_module_nodes(scene) == [node]


def test_values_are_typed_and_stored_on_the_node(scene, ct_node):
    parameters = parameter_node(scene)
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "restored here")
    parameters.input_volume = ct_node
    parameters.output_volume = output
    parameters.task = " MRI "  # a panel label: stored as the task name
    parameters.model = "AMIR"
    parameters.device = 1
    parameters.batch_size = 4

    node = parameters.node
    assert node.GetNodeReferenceID("InputVolume") == ct_node.GetID()
    assert node.GetNodeReferenceID("OutputVolume") == output.GetID()
    assert [node.GetParameter(key) for key in ("Task", "Model", "Device", "BatchSize")] == ["mri", "amir", "1", "4"]
    assert parameters.batch_size == 4 and isinstance(parameters.batch_size, int)

    parameters.model = MODEL_FILE
    parameters.model_path = "/models/my bundle"
    assert parameters.model_spec == "/models/my bundle"
    parameters.output_volume = None  # "Create new volume"
    assert parameters.output_volume is None and not node.GetNodeReferenceID("OutputVolume")
    parameters.task = None
    assert parameters.task == "auto"

    node.SetParameter("BatchSize", "many")  # a hand-edited scene file does not break the panel
    assert parameters.batch_size == 0
    parameters.self_ensemble = True
    assert node.GetParameter("SelfEnsemble") == "true" and parameters.self_ensemble is True
    node.SetParameter("SelfEnsemble", "perhaps")
    assert parameters.self_ensemble is False
    parameters.confidence_map = True
    assert node.GetParameter("ConfidenceMap") == "true" and parameters.confidence_map is True


def test_a_change_is_one_modified_event_and_an_unchanged_value_none(scene):
    parameters = parameter_node(scene)
    events = []
    parameters.node.AddObserver("ModifiedEvent", lambda caller, event: events.append(event))
    parameters.task = "ct"
    assert len(events) == 1
    parameters.task = "CT"  # the same name: nothing to show again (the widget sync cannot loop)
    assert len(events) == 1


def test_panel_state_survives_saving_and_loading_the_scene(scene, ct_node, tmp_path):
    parameters = parameter_node(scene)
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "restored here")
    parameters.input_volume = ct_node
    parameters.output_volume = output
    parameters.task = "pet"
    parameters.model = MODEL_FILE
    parameters.model_path = str(tmp_path / "my models" / "tat bundle")  # spaces survive
    parameters.device = "cuda:1"
    parameters.batch_size = 7
    parameters.self_ensemble = True
    scene_file = tmp_path / "saved.mrml"
    scene.SetURL(str(scene_file))
    assert scene.Commit()

    loaded_scene = slicer.vtkMRMLScene()
    loaded_scene.SetURL(str(scene_file))
    assert loaded_scene.Connect()
    loaded = parameter_node(loaded_scene)

    assert loaded.node.GetID() == parameters.node.GetID()
    assert scripted_module_nodes(loaded_scene) == [loaded.node]
    assert loaded.input_volume.GetName() == "SyntheticCT" and loaded.input_volume.GetScene() is loaded_scene
    assert loaded.output_volume.GetName() == "restored here"
    assert (loaded.task, loaded.model, loaded.model_path, loaded.device, loaded.batch_size) == (
        "pet",
        MODEL_FILE,
        str(tmp_path / "my models" / "tat bundle"),
        "cuda:1",
        7,
    )
    assert loaded.self_ensemble is True


def test_first_scalar_volume_is_the_default_input(scene):
    parameters = parameter_node(scene)
    parameters.select_default_input()
    assert parameters.input_volume is None  # nothing to choose from
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    first = testing.add_synthetic_ct(scene, name="First")
    testing.add_synthetic_ct(scene, name="Second")
    parameters.select_default_input()
    assert parameters.input_volume is first  # label maps are not images to restore
    chosen = testing.add_synthetic_ct(scene, name="Chosen")
    parameters.input_volume = chosen
    parameters.select_default_input()
    assert parameters.input_volume is chosen  # the user's choice is kept


def test_panel_choices_name_the_registry_tasks_and_settings():
    # The panel's labels are fixed (monai_tat is not imported in Slicer's process); lower-cased
    # they must be exactly "auto" and the registry's tasks, so a new task cannot be forgotten here.
    from monai_tat.tasks import TASKS

    assert [label.lower() for label in TASK_CHOICES] == ["auto", *TASKS]
    assert [label.lower() for label in MODEL_CHOICES] == ["tat", "amir"]
    assert set(SETTING_LABELS) == {"task", "model", "device", "batch_size"}
