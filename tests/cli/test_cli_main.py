"""The ``monai-tat`` entry point: help, version, argument errors, and the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from monai_tat import __version__
from monai_tat.cli import build_parser, main


def test_help_version_and_argument_errors(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 2  # no subcommand: the help goes to stderr
    assert "restore" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frobnicate" in err and err.startswith("monai-tat: error:")
    assert main(["restore", "only_one_path"]) == 2
    assert "required" in capsys.readouterr().err
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {"restore", "evaluate"} <= set(subcommands)


def test_console_script_end_to_end(tmp_path):
    """One real process through the installed entry point (errors are tested in-process)."""
    from cli_data import write_ct

    import torch

    from monai_tat.networks import AMIR

    source = write_ct(tmp_path / "in.nii.gz")
    torch.save(AMIR(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).state_dict(), tmp_path / "m.pt")
    script = shutil.which("monai-tat")
    command = [script] if script else [sys.executable, "-c", "import sys; from monai_tat.cli import main; sys.exit(main())"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([*command, "restore", str(source), str(tmp_path / "out.mha"), "--model", str(tmp_path / "m.pt"),
                         "--device", "cpu", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # nothing but errors goes to stderr, and --quiet hides the bar
    assert "AMIR" in ok.stdout and (tmp_path / "out.mha").is_file()


def test_a_subcommand_that_fails_to_import_is_an_error_not_a_missing_command(monkeypatch):
    import monai_tat.cli as cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", (*cli.SUBCOMMANDS, "no_such_subcommand"))
    with pytest.raises(ModuleNotFoundError, match="no_such_subcommand"):
        cli.build_parser()
