"""First use: find the third-party Python packages the background process needs, and plan their installation.

The ``monai_tat`` library itself is never installed: it ships inside the extension, next to the
module (see ``restore_volume_script.library_root``). What it needs from others is installed into
Slicer's Python on first use, and nothing silently: :func:`install` shows the whole plan to the
user through a ``confirm`` callable (a dialog in Slicer) and does nothing when the user declines.

- torch comes from the PyTorch extension's installer (``PyTorchUtils``), which picks the build
  that matches the GPU driver; without that extension, Slicer >= 5.12 installs it with
  ``slicer.packaging.pip_ensure``, older Slicer asks for the extension.
- the rest is ``Resources/requirements.txt`` of the module (monai, pydicom ...), installed with
  ``slicer.packaging.pip_ensure`` on Slicer >= 5.12 and ``slicer.util.pip_install`` before.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from MedicalRestoreLib.errors import RestoreInputError

TORCH = "torch"
TORCH_REQUIREMENT = ">=2.1"
#: The module's list of third-party packages, relative to the module's folder.
REQUIREMENTS_FILE = Path("Resources") / "requirements.txt"
MODULE_DIR = Path(__file__).resolve().parents[1]

PYTORCH_EXTENSION = "PyTorch extension"
PIP_ENSURE = "slicer.packaging.pip_ensure"
PIP_INSTALL = "slicer.util.pip_install"

PIP_ENSURE_SINCE = (5, 12)  # the Slicer release that ships slicer.packaging.pip_ensure

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class InstallStep:
    """Install one package: its name (import name for torch, distribution otherwise), how, and the pip requirement."""

    module: str
    method: str
    requirement: str

    def describe(self) -> str:
        """One line for the confirmation dialog."""
        return f"{self.module}: {self.requirement} (with {self.method})"


def read_requirements(path: Path = MODULE_DIR / REQUIREMENTS_FILE) -> List[str]:
    """The requirement lines of a requirements file (comments, blank lines and pip options skipped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            lines.append(text)
    return lines


def requirement_name(requirement: str) -> str:
    """The distribution name a requirement line starts with (``"monai>=1.4"`` -> ``"monai"``)."""
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def is_satisfied(requirement: str, version_of: Callable[[str], str] = importlib.metadata.version) -> bool:
    """Whether an installed distribution meets ``requirement`` (name and version range), as pip would judge.

    Without the ``packaging`` package (old Slicer) only the distribution's presence is checked.
    """
    try:
        installed = version_of(requirement_name(requirement))
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    return Requirement(requirement).specifier.contains(installed, prereleases=True)


def missing_packages(
    requirements: Optional[Sequence[str]] = None,
    find_spec: Callable[[str], object] = importlib.util.find_spec,
    version_of: Callable[[str], str] = importlib.metadata.version,
) -> List[str]:
    """``"torch"`` when torch cannot be imported, then the requirement lines not met, in install order."""
    requirements = read_requirements() if requirements is None else requirements
    missing = []
    try:
        torch_found = find_spec(TORCH) is not None
    except (ImportError, ValueError):
        torch_found = False
    if not torch_found:
        missing.append(TORCH)
    missing += [line for line in requirements if not is_satisfied(line, version_of)]
    return missing


def build_install_plan(
    missing: Sequence[str],
    slicer_version: Tuple[int, int],
    has_pytorch_extension: bool,
) -> List[InstallStep]:
    """The steps that install the ``missing`` packages on this Slicer.

    Args:
        missing: from :func:`missing_packages`: ``"torch"`` and requirement lines.
        slicer_version: (major, minor) of the running Slicer.
        has_pytorch_extension: whether the PyTorch extension (``PyTorchUtils``) is importable.

    Raises:
        RestoreInputError: torch is missing and neither installer is available.
    """
    has_pip_ensure = tuple(slicer_version) >= PIP_ENSURE_SINCE
    steps = []
    if TORCH in missing:
        if has_pytorch_extension:
            steps.append(InstallStep(TORCH, PYTORCH_EXTENSION, TORCH + TORCH_REQUIREMENT))
        elif has_pip_ensure:
            steps.append(InstallStep(TORCH, PIP_ENSURE, TORCH + TORCH_REQUIREMENT))
        else:
            raise RestoreInputError(
                "PyTorch is not installed and this Slicer cannot install it by itself: install the "
                "'PyTorch' extension from the Extensions Manager, restart Slicer and click Restore again."
            )
    method = PIP_ENSURE if has_pip_ensure else PIP_INSTALL
    steps += [InstallStep(requirement_name(line), method, line) for line in missing if line != TORCH]
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

    torch goes first (monai would otherwise pull a build of its own); the requirement lines then
    go to pip in one call.

    Args:
        plan: steps from :func:`build_install_plan`.
        confirm: shows the question and returns the user's answer (a dialog in Slicer).
        slicer_module: the ``slicer`` module of the running application.
    """
    if not plan:
        return True
    if not confirm(confirmation_text(plan)):
        return False
    pip_ensure = _pip_ensure_function(slicer_module)
    for step in plan:
        if step.method == PYTORCH_EXTENSION:
            import PyTorchUtils  # the PyTorch extension's module, present in Slicer when installed

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(False, None, TORCH_REQUIREMENT) is None:
                raise RestoreInputError("PyTorch was not installed; install it from the PyTorch Utils module.")
        elif step.module == TORCH:
            _run_pip([step], pip_ensure, slicer_module)
    _run_pip([step for step in plan if step.module != TORCH], pip_ensure, slicer_module)
    importlib.invalidate_caches()
    return True


def _run_pip(steps: Sequence[InstallStep], pip_ensure: Optional[Callable], slicer_module) -> None:
    if not steps:
        return
    if steps[0].method == PIP_ENSURE and pip_ensure is not None:
        # The user confirmed the whole plan already, so pip_ensure's own prompt would ask twice.
        pip_ensure([_requirement(step.requirement) for step in steps], prompt_install=False, requester="MedicalRestore")
    else:
        slicer_module.util.pip_install([step.requirement for step in steps])
