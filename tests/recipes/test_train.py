"""The demo weights' training script is a thin layer over the bundle's train.json: a quick run end to
end, rerunning the same command resumes, and the script runs by its path from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_tat.inference import load_model
from monai_tat.io import read_checkpoint
from train import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo_weights"


def test_quick_training_exports_weights_metrics_and_resumes(tmp_path):
    # a network trained for seconds cannot gain: the gate scores and records it without refusing the export
    args = ["--model", "tat", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--quick", "--gate", "report"]
    assert main(args) == 0
    weights = tmp_path / "out" / "tat_demo.safetensors"
    state, config = read_checkpoint(weights)
    assert config["name"] == "TAT" and config["dim"] == 8
    info = json.loads((tmp_path / "out" / "tat_demo_metrics.json").read_text())
    assert info["iterations"] == 4 and set(info["heldout_metrics"]) == {"ct", "pet", "mri"}
    assert all(m["slices"] > 0 for m in info["heldout_metrics"].values())
    gate = info["heldout_gate"]
    assert gate["enforced"] is False and {v["task"] for v in gate["volumes"]} == {"ct", "pet", "mri"}
    assert gate["passed"] == all(v["passed"] for v in gate["volumes"]) and "| held-out volume |" in gate["table_markdown"]
    assert json.loads((tmp_path / "work" / "heldout_gate.json").read_text())["volumes"] == gate["volumes"]
    out = load_model(str(weights))(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()
    datalist = json.loads((tmp_path / "work" / "phantoms" / "datalist.json").read_text())
    assert {item["task"] for item in datalist["training"]} == {"ct", "pet", "mri"}
    # The same command again: the trainer restores its last checkpoint (4 of 4 iterations done).
    assert main(args + ["--iterations", "6"]) == 0
    full = torch.load(tmp_path / "work" / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert full["trainer"]["iteration"] == 6
    # A stopped run's best validated weights export without training further.
    (tmp_path / "out" / "tat_demo.safetensors").unlink()
    assert main(args + ["--export-only"]) == 0
    info = json.loads((tmp_path / "out" / "tat_demo_metrics.json").read_text())
    assert info["stopped_at"] == "checkpoint_final" and info["wall_s_this_run"] == 0.0
    assert torch.equal(read_checkpoint(weights)[0]["patch_embed.weight"],
                       torch.load(tmp_path / "work" / "models" / "model.pt", weights_only=True)["patch_embed.weight"])


def test_init_weights_are_loaded_into_the_network(tmp_path):
    from train import QUICK_SIZES
    from monai_tat.networks import build_network

    # Weights of another size cannot be loaded strictly: the run stops before training starts.
    other = build_network("TAT", spatial_dims=2, in_channels=1, out_channels=1, **{**QUICK_SIZES["tat"], "dim": 4})
    torch.save(other.state_dict(), tmp_path / "other.pt")
    args = ["--model", "tat", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--quick",
            "--init", str(tmp_path / "other.pt")]
    with pytest.raises(Exception) as raised:
        main(args)
    chain, error = [], raised.value
    while error is not None:  # MONAI's config parser wraps the loading error
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("size mismatch for patch_embed.weight" in text for text in chain)
    assert not (tmp_path / "out" / "tat_demo.safetensors").exists()


@pytest.mark.recipe
def test_recipe_runs_as_a_script_from_any_folder(tmp_path):
    """What a user of a fresh clone types: the script by its path, run from another folder, with only
    the package importable; a tiny AMIR run with weighted tasks ends in weights and held-out metrics."""
    env = dict(os.environ)  # the package as installed (or on PYTHONPATH); the recipe folder is not on the path
    for script in ("prepare_data.py", "train.py", "denoising_bounds.py"):
        shown = subprocess.run([sys.executable, str(RECIPE / script), "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stderr
        assert f"recipes/demo_weights/{script}" in shown.stdout
    args = ["--model", "amir", "--out", "out", "--work", "work", "--quick", "--task-samples", "ct=1", "pet=1", "mri=2",
            "--gate", "report"]
    run = subprocess.run([sys.executable, str(RECIPE / "train.py"), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((tmp_path / "out" / "amir_demo_metrics.json").read_text())
    assert info["batch"] == 4 and info["task_samples"] == {"ct": 1, "pet": 1, "mri": 2}
    assert set(info["heldout_metrics"]) == {"ct", "pet", "mri"}
    assert read_checkpoint(tmp_path / "out" / "amir_demo.safetensors")[1]["name"] == "AMIR"


@pytest.mark.parametrize("pairs", [["ct=1", "pet=1"], ["ct=1", "pet=1", "mri=0"], ["ct=1", "pet=1", "MRI=2"],
                                   ["ct=1", "ct=2", "pet=1", "mri=1"]])
def test_task_samples_refuse_incomplete_or_wrong_counts(tmp_path, pairs, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "tat", "--out", str(tmp_path / "out"), "--quick", "--task-samples", *pairs])
    assert "--task-samples" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_only_average_exports_the_mean_of_two_weights(tmp_path, capsys):
    from train import QUICK_SIZES
    from monai_tat.networks import build_network

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = build_network("TAT", spatial_dims=2, in_channels=1, out_channels=1, **QUICK_SIZES["tat"])
        paths.append(tmp_path / f"w{seed}.pt")
        torch.save(net.state_dict(), paths[-1])
    args = ["--model", "tat", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--quick",
            "--export-only", "--average", *map(str, paths), "--gate", "off"]
    assert main(args) == 0
    exported = read_checkpoint(tmp_path / "out" / "tat_demo.safetensors")[0]["patch_embed.weight"]
    sources = [torch.load(p, weights_only=True)["patch_embed.weight"] for p in paths]
    torch.testing.assert_close(exported, (sources[0] + sources[1]) / 2)
    info = json.loads((tmp_path / "out" / "tat_demo_metrics.json").read_text())
    # recorded as last folder / name: the weights' metadata names no machine's folders
    assert [s["path"] for s in info["averaged_from"]] == [str(Path(p.parent.name, p.name)) for p in map(Path, paths)]
    assert all(len(s["sha256"]) == 64 for s in info["averaged_from"]) and "mri" in info["heldout_metrics"]
    assert info["heldout_gate"] == {"enforced": False, "skipped": True}  # --gate off: not scored
    assert info["iterations"] is None and info["learning_rate"] is None  # the sources' settings, not this command's
    # the work folder now holds weights: a second average there is refused and leaves them as they are
    before = (tmp_path / "work" / "models" / "model.pt").read_bytes()
    with pytest.raises(SystemExit, match="already exists"):
        main(args)
    assert (tmp_path / "work" / "models" / "model.pt").read_bytes() == before
    assert [s["fraction"] for s in info["averaged_from"]] == [0.5, 0.5]
    # a weighted mean: 0.75 / 0.25
    weighted = ["--model", "tat", "--out", str(tmp_path / "out2"), "--work", str(tmp_path / "work2"), "--quick",
                "--export-only", "--average", *map(str, paths), "--average-fractions", "0.75", "0.25", "--gate", "off"]
    assert main(weighted) == 0
    torch.testing.assert_close(read_checkpoint(tmp_path / "out2" / "tat_demo.safetensors")[0]["patch_embed.weight"],
                               0.75 * sources[0] + 0.25 * sources[1])
    for fractions in (["0.5"], ["0.7", "0.7"], ["1.5", "-0.5"]):
        with pytest.raises(SystemExit):
            main([*weighted[:-2], "--average-fractions", *fractions, "--gate", "off"])
    # averaging is an export: without --export-only (or with one file) the command line is refused
    for wrong in (["--average", *map(str, paths)], ["--export-only", "--average", str(paths[0])]):
        with pytest.raises(SystemExit):
            main(["--model", "tat", "--out", str(tmp_path / "o2"), "--quick", *wrong])
        assert "--average" in capsys.readouterr().err


def test_anchored_run_and_the_export_of_its_checkpoint_average(tmp_path, capsys):
    from train import QUICK_SIZES
    from monai_tat.networks import build_network

    torch.manual_seed(3)
    teacher = build_network("TAT", spatial_dims=2, in_channels=1, out_channels=1, **QUICK_SIZES["tat"])
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    args = ["--model", "tat", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--quick",
            "--gate", "off", "--init", str(tmp_path / "teacher.pt"), "--anchor", str(tmp_path / "teacher.pt"),
            "--anchor-tasks", "pet", "ct"]
    assert main(args) == 0
    info = json.loads((tmp_path / "out" / "tat_demo_metrics.json").read_text())
    record = info["anchored_to"]
    assert record["tasks"] == ["pet", "ct"] and record["teacher_fraction"] == 1.0 and len(record["sha256"]) == 64
    # train.json's objective was the anchored one: its checkpointed state is the wrapped objective's,
    # and holds no teacher weights
    loss_state = torch.load(tmp_path / "work" / "checkpoints" / "checkpoint_final.pt", weights_only=True)["loss"]
    assert loss_state and all(key.startswith("objective.sigma_estimator.") for key in loss_state)
    assert "references_as_inputs" not in record
    # --from-checkpoint: the weight average a full checkpoint holds, exported and gated instead of the best validated
    export = ["--model", "tat", "--out", str(tmp_path / "out_ckpt"), "--work", str(tmp_path / "work"), "--quick",
              "--gate", "report", "--export-only", "--from-checkpoint", "checkpoint_final.pt"]
    assert main(export) == 0
    full = torch.load(tmp_path / "work" / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    exported = read_checkpoint(tmp_path / "out_ckpt" / "tat_demo.safetensors")[0]
    assert all(torch.equal(exported[k], v.float()) for k, v in full["ema"]["model"].items())
    info = json.loads((tmp_path / "out_ckpt" / "tat_demo_metrics.json").read_text())
    assert info["exported_from"]["checkpoint"] == "checkpoint_final.pt" and info["exported_from"]["iteration"] == 4
    assert info["heldout_gate"]["weights"].endswith("from_checkpoint.pt")
    for wrong in (["--from-checkpoint", "nothing.pt"], ["--from-checkpoint", "../checkpoints/checkpoint_final.pt"]):
        with pytest.raises(SystemExit, match="no checkpoint"):
            main([*export[:-2], *wrong])
    with pytest.raises(SystemExit):
        main([*export[:-3], "--from-checkpoint", "checkpoint_final.pt"])  # not an export: refused
    assert "--from-checkpoint exports one checkpoint" in capsys.readouterr().err
    # --anchor-references: each training reference of an anchored task becomes an input of its own
    assert main([*args, "--work", str(tmp_path / "work_refs"), "--out", str(tmp_path / "out_refs"),
                 "--anchor-references"]) == 0
    assert json.loads((tmp_path / "out_refs" / "tat_demo_metrics.json").read_text())["anchored_to"]["references_as_inputs"]
    references = json.loads((tmp_path / "work_refs" / "anchor_references.json").read_text())["training"]
    pairs = json.loads((tmp_path / "work_refs" / "phantoms" / "datalist.json").read_text())["training"]
    assert len(references) == sum(item["task"] in ("ct", "pet") for item in pairs) > 0
    assert all(r["image"] == r["label"] and r["task"] in ("ct", "pet") for r in references)
    # every task anchored (nothing left to learn), a fraction outside [0, 1], or anchoring an export: refused
    for wrong in (["--anchor-tasks", "ct", "pet", "mri"], ["--anchor-fraction", "1.5"]):
        with pytest.raises(SystemExit):
            main([*args[:-3], *wrong, "--work", str(tmp_path / "w2")])
        assert "--anchor" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "tat", "--out", str(tmp_path / "o4"), "--quick", "--anchor-references"])
    assert "--anchor-references needs --anchor" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "tat", "--out", str(tmp_path / "o3"), "--quick", "--export-only",
              "--anchor", str(tmp_path / "teacher.pt")])
    assert "--anchor is a training option" in capsys.readouterr().err


def test_training_without_the_train_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "tat", "--out", str(tmp_path / "out"), "--quick"])
    assert exit_info.value.code == 2
    assert 'TensorBoard, which is not installed: install the training extra (pip install -e ".[train]"' in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_large_size_is_the_papers_depth_and_exports_under_its_own_name(tmp_path):
    from train import LARGE_SIZES
    from monai_tat.networks import build_network

    large = build_network("TAT", spatial_dims=2, in_channels=1, out_channels=1, **LARGE_SIZES["tat"])
    assert sum(p.numel() for p in large.parameters()) == 10_573_748
    assert LARGE_SIZES["tat"]["num_blocks"] == [4, 6, 6, 8] and LARGE_SIZES["tat"]["num_refinement_blocks"] == 4
    args = ["--model", "tat", "--size", "large", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
            "--quick", "--gate", "off"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tat_large.safetensors", "tat_large_metrics.json"]
