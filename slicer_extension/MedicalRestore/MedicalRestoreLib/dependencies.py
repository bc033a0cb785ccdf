"""First use: find the Python packages the background process needs, and plan their installation.

Nothing is ever installed silently: :func:`install` shows the whole plan to the user through a
``confirm`` callable (a dialog in Slicer) and does nothing when the user declines.

- torch comes from the PyTorch extension's installer (``PyTorchUtils``), which picks the build
  that matches the GPU driver; without that extension, Slicer >= 5.12 installs it with
  ``slicer.packaging.pip_ensure``, older Slicer asks for the extension.
- monai-tat comes from the source checkout that holds this extension when there is one, else
  from the package index; with ``slicer.packaging.pip_ensure`` on Slicer >= 5.12 and
  ``slicer.util.pip_install`` before.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from MedicalRestoreLib.errors import RestoreInputError

# Import name -> distribution name, in installation order (monai-tat needs torch first).
REQUIRED_PACKAGES = (("torch", "torch"), ("monai_tat", "monai-tat"))
TORCH_REQUIREMENT = ">=2.1"

PYTORCH_EXTENSION = "PyTorch extension"
PIP_ENSURE = "slicer.packaging.pip_ensure"
PIP_INSTALL = "slicer.util.pip_install"

PIP_ENSURE_SINCE = (5, 12)  # the Slicer release that ships slicer.packaging.pip_ensure


@dataclass(frozen=True)
class InstallStep:
    """Install one package: the import name it provides, how, and the pip requirement."""

    module: str
    method: str
    requirement: str

    def describe(self) -> str:
        """One line for the confirmation dialog."""
        return f"{self.module}: {self.requirement} (with {self.method})"


def missing_modules(find_spec: Callable[[str], object] = importlib.util.find_spec) -> List[str]:
    """Import names of the required packages that this Python cannot find, in install order."""
    missing = []
    for module, _ in REQUIRED_PACKAGES:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def source_checkout(start: Path) -> Optional[Path]:
    """The monai-tat repository that holds this extension (``setup.py`` beside ``monai_tat/``), if any."""
    for folder in [start, *start.parents]:
        if (folder / "setup.py").is_file() and (folder / "monai_tat" / "__init__.py").is_file():
            return folder
    return None


def build_install_plan(
    missing: Sequence[str],
    slicer_version: Tuple[int, int],
    has_pytorch_extension: bool,
    source_root: Optional[Path] = None,
) -> List[InstallStep]:
    """The steps that install the ``missing`` import names on this Slicer.

    Args:
        missing: import names from :func:`missing_modules`.
        slicer_version: (major, minor) of the running Slicer.
        has_pytorch_extension: whether the PyTorch extension (``PyTorchUtils``) is importable.
        source_root: a monai-tat source checkout to install from instead of the package index.

    Raises:
        RestoreInputError: torch is missing and neither installer is available.
    """
    has_pip_ensure = tuple(slicer_version) >= PIP_ENSURE_SINCE
    steps = []
    if "torch" in missing:
        if has_pytorch_extension:
            steps.append(InstallStep("torch", PYTORCH_EXTENSION, "torch" + TORCH_REQUIREMENT))
        elif has_pip_ensure:
            steps.append(InstallStep("torch", PIP_ENSURE, "torch" + TORCH_REQUIREMENT))
        else:
            raise RestoreInputError(
                "PyTorch is not installed and this Slicer cannot install it by itself: install the "
                "'PyTorch' extension from the Extensions Manager, restart Slicer and click Restore again."
            )
    if "monai_tat" in missing:
        if source_root is not None:
            requirement = (
                f"monai-tat @ {Path(source_root).resolve().as_uri()}" if has_pip_ensure else str(source_root)
            )
        else:
            requirement = "monai-tat"
        steps.append(InstallStep("monai_tat", PIP_ENSURE if has_pip_ensure else PIP_INSTALL, requirement))
    return steps


def confirmation_text(plan: Sequence[InstallStep]) -> str:
    """The question shown before anything is installed."""
    lines = [
        "MedicalRestore needs Python packages that are not installed yet:",
        *(f"  - {step.describe()}" for step in plan),
        "",
        "They are downloaded from the internet (PyTorch alone is several GB with GPU support) and "
        "installed into Slicer's Python. This can take several minutes. Install them now?",
    ]
    return "\n".join(lines)


def _pip_ensure_function(slicer_module) -> Optional[Callable]:
    """``pip_ensure`` of this Slicer: ``slicer.packaging`` (5.12), ``slicer.pydeps`` (its preview name)."""
    for name in ("packaging", "pydeps"):
        module = getattr(slicer_module, name, None)
        if module is None and hasattr(slicer_module, "__name__"):
            try:
                module = importlib.import_module(f"{slicer_module.__name__}.{name}")
            except ImportError:
                module = None
        if module is not None and hasattr(module, "pip_ensure"):
            return module.pip_ensure
    return None


def _requirement(text: str):
    """A ``packaging`` Requirement (what pip_ensure takes), or the text when packaging is absent."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return text
    return Requirement(text)


def install(plan: Sequence[InstallStep], confirm: Callable[[str], bool], slicer_module) -> bool:
    """Run ``plan`` after the user agreed; False (nothing installed) when the user declines.

    Args:
        plan: steps from :func:`build_install_plan`.
        confirm: shows the question and returns the user's answer (a dialog in Slicer).
        slicer_module: the ``slicer`` module of the running application.
    """
    if not plan:
        return True
    if not confirm(confirmation_text(plan)):
        return False
    for step in plan:
        if step.method == PYTORCH_EXTENSION:
            import PyTorchUtils  # the PyTorch extension's module, present in Slicer when installed

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(False, None, TORCH_REQUIREMENT) is None:
                raise RestoreInputError("PyTorch was not installed; install it from the PyTorch Utils module.")
        elif step.method == PIP_ENSURE and _pip_ensure_function(slicer_module) is not None:
            # The user confirmed the whole plan above, so pip_ensure's own prompt would ask twice.
            _pip_ensure_function(slicer_module)(
                [_requirement(step.requirement)], prompt_install=False, requester="MedicalRestore"
            )
        else:
            slicer_module.util.pip_install([step.requirement])
    importlib.invalidate_caches()
    return True
