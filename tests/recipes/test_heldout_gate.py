"""The training command's held-out "no harm" gate: weights that make any held-out volume worse than
its input are refused and nothing is exported; weights that gain on every volume pass, and the
per-volume table lands in the work folder and in the exported metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import heldout_gate
from monai_tat.demo.samples import make_sample
from monai_tat.inference import demo_weights_path
from monai_tat.io import as_meta_tensor, read_checkpoint, write_volume
from train import main

SHIPPED_TAT = demo_weights_path("tat")


def _write_heldout(folder: Path, tasks: tuple[str, ...] = ("ct", "mri")) -> Path:
    """A tiny held-out datalist: demo phantoms (``monai_tat.demo.phantoms``) degraded by the package's
    simulators (quarter-dose CT, 4x k-space MRI), 64 x 64 x 1, on which the shipped weights gain."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for task in tasks:
        sample = make_sample(task, size=64, slices=1)
        pair = {}
        for key, volume in (("image", sample.low_quality), ("label", sample.reference)):
            rel = f"{task}_{'lq' if key == 'image' else 'hq'}.nii.gz"
            write_volume(volume, folder / rel)
            pair[key] = rel
        items.append({**pair, "task": task})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"testing": items}), encoding="utf-8")
    return path


def _scaled_shipped_weights(path: Path, factor: float) -> Path:
    """The shipped TAT weights with the output convolution (the residual it adds) scaled by ``factor``."""
    state, _ = read_checkpoint(SHIPPED_TAT)
    state = {k: v.clone() for k, v in state.items()}
    state["output.weight"] *= factor
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _gate_args(tmp_path: Path, datalist: Path) -> list[str]:
    return ["--model", "tat", "--work", str(tmp_path / "work"), "--no-phantoms", "--datalist", str(datalist)]


def test_gate_only_passes_the_shipped_weights_where_they_gain(tmp_path):
    datalist = _write_heldout(tmp_path / "heldout")
    assert main([*_gate_args(tmp_path, datalist), "--gate-only", str(SHIPPED_TAT)]) == 0
    table = json.loads((tmp_path / "work" / "heldout_gate.json").read_text())
    assert table["passed"] and [v["volume"] for v in table["volumes"]] == ["heldout/ct_lq.nii.gz", "heldout/mri_lq.nii.gz"]
    for volume in table["volumes"]:
        assert volume["mean_gain_db"] > 0.5 and volume["losing_slices"] == 0 and volume["slices"] == 1
        assert volume["restored_psnr"] - volume["input_psnr"] == pytest.approx(volume["mean_gain_db"], abs=1e-3)
    mri = table["volumes"][1]
    assert mri["kspace_consistency"] is True  # the default restore path, as `monai-tat restore` runs it
    markdown = (tmp_path / "work" / "heldout_gate.md").read_text()
    assert "| heldout/mri_lq.nii.gz | MRI | 1 |" in markdown and "refused" not in markdown


def test_training_command_refuses_a_harmful_checkpoint_and_writes_nothing(tmp_path):
    datalist = _write_heldout(tmp_path / "heldout")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tat_demo.safetensors").write_bytes(b"weights shipped before")
    _scaled_shipped_weights(tmp_path / "work" / "models" / "model.pt", factor=12.0)
    args = [*_gate_args(tmp_path, datalist), "--out", str(out), "--export-only", "--no-bundles"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("held-out gate refused")
    for volume in ("heldout/ct_lq.nii.gz (ct): mean gain -", "heldout/mri_lq.nii.gz (mri): mean gain -"):
        assert volume in message
    assert "1 of 1 slices (100.0 %) lose more than 0.1 dB" in message
    assert sorted(p.name for p in out.iterdir()) == ["tat_demo.safetensors"]
    assert (out / "tat_demo.safetensors").read_bytes() == b"weights shipped before"
    table = json.loads((tmp_path / "work" / "heldout_gate.json").read_text())
    assert not table["passed"] and all(not v["passed"] and v["mean_gain_db"] < 0 for v in table["volumes"])
    # The network's own weights, unscaled, gain on both volumes: exported, table in the metrics.
    _scaled_shipped_weights(tmp_path / "work" / "models" / "model.pt", factor=1.0)
    assert main(args) == 0
    assert read_checkpoint(out / "tat_demo.safetensors")[1]["dim"] == 16
    gate = json.loads((out / "tat_demo_metrics.json").read_text())["heldout_gate"]
    assert gate["passed"] and gate["enforced"] and len(gate["volumes"]) == 2
    assert gate["rule"] == {"min_gain_db": 0.0, "loss_db": 0.1, "max_losing_fraction": 0.05, "task_min_gain_db": {}}
    assert "| heldout/ct_lq.nii.gz | CT | 1 |" in gate["table_markdown"]


class MeanFilter(nn.Module):
    """A stand-in restoration network: a 3 x 3 mean filter (gains on noisy slices, loses on clean ones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _ct_pair(noisy_slices: int, clean_slices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A CT reference (fine sinusoidal texture, HU) and an input that is very noisy on the first slices
    and barely noisy on the last (where a mean filter blurs more than it denoises)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:32, :32]
    base = 80.0 * np.sin(x / 3.0) * np.cos(y / 4.0) + 40.0
    slices = noisy_slices + clean_slices
    label = np.stack([base + 5.0 * k for k in range(slices)], axis=-1).astype(np.float32)
    image = label.copy()
    noise_hu = np.array([60.0] * noisy_slices + [2.0] * clean_slices, dtype=np.float32)
    image += rng.normal(0, 1.0, image.shape).astype(np.float32) * noise_hu
    return as_meta_tensor(image), as_meta_tensor(label)


def test_a_volume_with_too_many_losing_slices_is_refused_although_its_mean_gains():
    image, label = _ct_pair(noisy_slices=9, clean_slices=1)
    score = heldout_gate.score_volume("ct pair", image, label, "ct", MeanFilter(), heldout_gate.GateRule())
    assert score.mean_gain_db > 1 and score.losing_slices == 1 and score.losing_fraction == pytest.approx(0.1)
    assert score.failures == [f"1 of 10 slices (10.0 %) lose more than 0.1 dB (at most 5 % may), worst "
                              f"{score.worst_gain_db:+.2f} dB"]
    assert score.slice_gains_db[-1] < -0.1 and all(g > 0 for g in score.slice_gains_db[:9])
    lenient = heldout_gate.GateRule(max_losing_fraction=0.1)
    assert heldout_gate.score_volume("ct pair", image, label, "ct", MeanFilter(), lenient).passed


def test_a_network_that_changes_nothing_gains_nothing_and_is_refused():
    image, label = _ct_pair(noisy_slices=3, clean_slices=0)
    report = heldout_gate.run_gate([{"image": image, "label": label, "task": "ct", "case": "noisy ct"}],
                                   Identity(), heldout_gate.GateRule(), weights="identity")
    assert not report.passed and report.volumes[0].mean_gain_db == pytest.approx(0.0, abs=1e-4)
    assert report.refusal().startswith("held-out gate refused identity: noisy ct (ct): mean gain ")
    assert "(needs > +0.00)" in report.refusal()


def test_a_task_below_its_minimum_gain_is_refused_by_name():
    image, label = _ct_pair(noisy_slices=3, clean_slices=0)
    items = [{"image": image, "label": label, "task": "ct", "case": "noisy ct"}]
    rule = heldout_gate.GateRule(task_min_gain_db={"ct": 40.0, "pet": 1.0})
    report = heldout_gate.run_gate(items, MeanFilter(), rule, weights="mean filter")
    assert report.volumes[0].passed and not report.passed
    gain = report.tasks["ct"]["mean_gain_db"]
    assert 0 < gain < 40 and report.tasks["pet"]["volumes"] == 0
    assert report.refusal() == (f"held-out gate refused mean filter: task ct: mean gain {gain:+.3f} dB over 3 slices "
                                "(needs >= +40.00) | task pet: no held-out volume of this task (needs a mean gain >= "
                                "+1.00 dB)")
    markdown = report.to_markdown()
    assert "| CT | 1 | 3 |" in markdown and "| +40.00 | refused |" in markdown
    assert heldout_gate.run_gate(items, MeanFilter(), heldout_gate.GateRule(task_min_gain_db={"ct": 1.0})).passed
    # a task minimum is compared exactly: a mean gain 0.004 dB short is refused even where it rounds up
    short = heldout_gate.run_gate(items, MeanFilter(), heldout_gate.GateRule(task_min_gain_db={"ct": gain + 0.004}))
    assert not short.passed and f"| CT | 1 | 3 | {gain:+.3f} |" in short.to_markdown()
    assert heldout_gate.run_gate(items, MeanFilter(), heldout_gate.GateRule(task_min_gain_db={"ct": gain})).passed


def test_slice_gains_skip_constant_references_and_count_exact_slices():
    gains = heldout_gate._slice_gains(np.array([30.0, math.nan, math.inf, 20.0]), np.array([28.0, math.nan, math.inf, math.inf]))
    assert gains[0] == 2.0 and math.isnan(gains[1]) and gains[2] == 0.0 and gains[3] == -math.inf


@pytest.mark.parametrize("wrong, needle", [
    (["--out", "o", "--gate-task-gain", "ct=high"], "--gate-task-gain"),
    (["--out", "o", "--gate-task-gain", "ct=1", "ct=2"], "--gate-task-gain"),
    (["--out", "o", "--gate-max-losing", "1.5"], "max_losing_fraction"),
    ([], "--out is required"),
    (["--out", "o", "--no-phantoms"], "--no-phantoms needs --datalist"),
    (["--gate-only", "w.pt", "--export-only"], "--gate-only"),
])
def test_gate_options_are_checked_before_anything_runs(tmp_path, wrong, needle, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--model", "tat", "--work", str(tmp_path / "work"), *wrong])
    assert stopped.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
