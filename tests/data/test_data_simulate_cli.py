"""``monai-tat simulate``: writes pairs and a datalist; user mistakes end as one line and status 2."""

from __future__ import annotations

import json

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.cli import main
from monai_tat.io import write_volume


def _inputs(tmp_path, n=2):
    paths = []
    for i in range(n):
        data = np.random.default_rng(i).random((16, 16, 2)).astype(np.float32) * 1000
        path = tmp_path / f"mr{i}.nii.gz"
        write_volume(MetaTensor(torch.from_numpy(data)), path)
        paths.append(str(path))
    return paths


def test_simulate_writes_pairs_and_datalist(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["simulate", *_inputs(tmp_path), "--task", "mri", "--out", str(out), "--split", "1", "0", "0",
                 "--factor", "2", "--quiet"])
    assert code == 0
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["numTraining"] == 2 and datalist["simulation"]["arguments"] == {"factor": 2.0}
    assert {p.name for p in (out / "lq").iterdir()} == {"mr0.nii.gz", "mr1.nii.gz"}
    assert "datalist" in capsys.readouterr().out


def test_simulate_refuses_to_overwrite_and_wrong_task_options(tmp_path, capsys):
    inputs = _inputs(tmp_path, 1)
    out = str(tmp_path / "out")
    assert main(["simulate", *inputs, "--task", "mri", "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["simulate", *inputs, "--task", "mri", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("monai-tat: error:") and "exists" in err and err.count("\n") == 1
    assert main(["simulate", *inputs, "--task", "mri", "--out", out, "--overwrite", "--quiet"]) == 0
    assert main(["simulate", *inputs, "--task", "ct", "--out", out, "--dose-reduction-factor", "4"]) == 2
    assert "--dose-reduction-factor applies to --task pet" in capsys.readouterr().err
