"""``monai-tat demo`` with the shipped weights: restored beats the low-quality input on every task."""

from __future__ import annotations

import numpy as np
import pytest

from monai_tat.cli import main
from monai_tat.io import read_volume
from monai_tat.metrics import psnr


# TAT (the default model) at a reduced size; AMIR, whose demo weights are weaker on low-noise CT
# (see recipes/demo_weights/MODEL_CARD.md), at the demo's default size.
@pytest.mark.slow
@pytest.mark.parametrize("model, size", [("tat", 128), ("amir", 192)])
def test_demo_restores_every_task(tmp_path, capsys, model, size):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", str(size), "--slices", "2", "--model", model, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "not for clinical use" in printed and "real anatomy" in printed
    for case, task in (("ct", "ct"), ("pet", "pet"), ("mri", "mri"), ("ct_real", "ct")):
        ref = np.asarray(read_volume(out / f"{case}_reference.nii.gz"))
        low = np.asarray(read_volume(out / f"{case}_low_quality.nii.gz"))
        restored = np.asarray(read_volume(out / f"{case}_restored.nii.gz"))
        assert (out / f"{case}.png").stat().st_size > 0
        gain = np.mean([psnr(restored[..., k], ref[..., k], task) - psnr(low[..., k], ref[..., k], task)
                        for k in range(ref.shape[-1])])
        assert gain > 0.0, f"{model} {case}: restored is not better than the input ({gain:.2f} dB)"


def test_demo_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--size", "48", "--slices", "1", "--task", "mri", "--device", "cpu"]
    assert main(args) == 0
    before = (out / "mri.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "mri.png").stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


def test_demo_png_carries_the_three_panel_labels(tmp_path):
    from PIL import Image

    from monai_tat.cli.demo import LABEL_BAR_PX, labelled_strip

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "48", "--slices", "1", "--task", "ct", "--device", "cpu"]) == 0
    png = np.asarray(Image.open(out / "ct.png"))
    bar, thirds = png[:LABEL_BAR_PX], np.array_split(np.arange(png.shape[1]), 3)
    assert png.shape[0] == 48 * 6 + LABEL_BAR_PX  # the 48-pixel sample zoomed to >= 256 rows, under the bar
    assert all((bar[:, cols] < 128).any() for cols in thirds)  # a label over each panel
    # the text is the labels' own: the same panels drawn without labels leave the bar white
    blank = labelled_strip([np.zeros((8, 40), np.uint8)] * 3, labels=("", "", ""))
    assert (blank[:LABEL_BAR_PX] == 255).all() and blank.shape == (8 + LABEL_BAR_PX, 3 * 40 + 2 * 4)
