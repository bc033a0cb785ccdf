"""Smoke run of the volume-speed benchmark script with tiny networks (the numbers are not checked)."""

from __future__ import annotations

from monai_tat.benchmarks.volume_speed import ct_like_volume, main


def test_ct_like_volume_and_smoke_run(capsys):
    volume = ct_like_volume((12, 10, 2))
    assert volume.shape == (12, 10, 2) and float(volume.min()) < -900 and float(volume.max()) > 0
    assert main(["--size", "16", "16", "2", "--tiny", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("volume (16, 16, 2)")
    assert [line.split()[0] for line in lines[1:]] == ["TAT", "AMIR"] and all("s/volume" in l for l in lines[1:])
