"""Render the MedicalRestore panel's layout from its .ui file to a PNG, without Slicer.

Slicer's own widgets are replaced by plain Qt ones of the same role (collapsible buttons by group
boxes, MRML node selectors by combo boxes, the path editor by a line edit), the choices are the
module's own, and the image is labelled as a rendering of the panel layout. Needs PySide6
(``pip install PySide6-Essentials``); runs headless on Qt's offscreen platform::

    QT_QPA_PLATFORM=offscreen python slicer_extension/Screenshots/render_panel.py
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = HERE.parent / "MedicalRestore"
UI_FILE = MODULE / "Resources" / "UI" / "MedicalRestore.ui"
OUTPUT = HERE / "MedicalRestorePanel.png"
PLAIN_WIDGETS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "qMRMLNodeComboBox": "QComboBox",
    "ctkPathLineEdit": "QLineEdit",
}
# Properties the plain widgets do not have.
SLICER_ONLY_PROPERTIES = {
    "nodeTypes", "hideChildNodeTypes", "showChildNodeTypes", "addEnabled", "removeEnabled",
    "renameEnabled", "noneEnabled", "noneDisplay", "collapsed", "selectNodeUponCreation",
    "editEnabled", "filters", "settingKey", "showHidden", "baseName", "interactionNodeSingletonTag",
}


def plain_ui(path: Path) -> bytes:
    """The .ui text with Slicer's widgets swapped for plain Qt ones."""
    tree = ElementTree.parse(path)
    root = tree.getroot()
    for section in ("customwidgets", "connections"):  # Slicer's classes and their MRML scene signals
        element = root.find(section)
        if element is not None:
            root.remove(element)
    for widget in root.iter("widget"):
        widget.set("class", PLAIN_WIDGETS.get(widget.get("class"), widget.get("class")))
        for prop in list(widget.findall("property")):
            if prop.get("name") in SLICER_ONLY_PROPERTIES:
                widget.remove(prop)
            elif prop.get("name") == "text" and widget.get("class") == "QGroupBox":
                prop.set("name", "title")
    return ElementTree.tostring(root, encoding="utf-8")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QFont
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

    import importlib.util

    # parameters.py alone (the package's __init__ needs MRML): the panel's own choices.
    spec = importlib.util.spec_from_file_location("parameters", MODULE / "MedicalRestoreLib" / "parameters.py")
    choices = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choices)

    app = QApplication([])
    app.setFont(QFont("DejaVu Sans", 9))
    data = QByteArray(plain_ui(UI_FILE))  # kept alive while the loader reads it
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()
    panel = loader.load(buffer)
    if panel is None:
        print(f"could not load {UI_FILE}: {loader.errorString()}", file=sys.stderr)
        return 1
    panel.findChild(QWidget, "inputSelector").addItems(["PhantomLowDoseCT"])
    panel.findChild(QWidget, "outputSelector").addItems(["Create new volume"])
    panel.findChild(QWidget, "taskComboBox").addItems(list(choices.TASK_CHOICES))
    panel.findChild(QWidget, "modelComboBox").addItems([*choices.MODEL_CHOICES, choices.MODEL_FILE_CHOICE])
    panel.findChild(QWidget, "deviceComboBox").addItems(list(choices.DEVICE_CHOICES))
    panel.findChild(QWidget, "ampComboBox").addItems(list(choices.AMP_CHOICES))
    panel.findChild(QWidget, "modelPathLineEdit").setVisible(False)  # shown for a bundle / checkpoint only
    panel.findChild(QWidget, "statusLabel").setText("Done in 14 s: 'PhantomLowDoseCT restored'.")
    progress = panel.findChild(QWidget, "progressBar")
    progress.setMaximum(4)
    progress.setValue(4)

    window = QWidget()
    layout = QVBoxLayout(window)
    caption = QLabel("Medical Restore: rendering of the panel layout (MedicalRestore.ui), not a Slicer screenshot")
    caption.setAlignment(Qt.AlignCenter)
    caption.setStyleSheet("color: #555; font-style: italic;")
    layout.addWidget(caption)
    layout.addWidget(panel)
    window.resize(440, 640)
    window.show()
    app.processEvents()
    image = window.grab().toImage()
    image = image.convertToFormat(image.Format.Format_Indexed8)  # a palette keeps the PNG small
    if not image.save(str(OUTPUT), "PNG"):
        print(f"could not write {OUTPUT}", file=sys.stderr)
        return 1
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
