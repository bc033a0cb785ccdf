"""TorchScript scripting and tracing, and ONNX export (what MONAI's bundle export does), stay exact and honest."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime
import pytest
import torch

from monai_tat.networks import AMIR, TAT, Restormer

SMALL = dict(num_blocks=(1, 2, 2, 2), num_refinement_blocks=1)


def small_network(name: str) -> torch.nn.Module:
    return (TAT(dim=8, **SMALL) if name == "TAT" else AMIR(dim=6, **SMALL)).eval()


def slice_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """The tracing input, and a second, differently distributed one (other routing, other kernels)."""
    traced_on = torch.rand(1, 1, 128, 128)
    ramp = torch.linspace(0, 3, 128).reshape(1, 1, 1, 128)
    return traced_on, (ramp + 0.3 * torch.randn(1, 1, 128, 128)).abs()


SCRIPTED_VARIANTS = {
    "Restormer": lambda: Restormer(dim=8, **SMALL),
    "TAT": lambda: TAT(dim=8, tlc_window=48, **SMALL),  # windows at 61 x 77 slices: levels 1 and 2
    "TAT-global": lambda: TAT(dim=8, tlc=False, **SMALL),
    "TAT-no-generation": lambda: TAT(dim=8, weight_generation=False, tlc_window=48, **SMALL),
    "AMIR": lambda: AMIR(dim=6, **SMALL),
}


@pytest.mark.parametrize("variant", sorted(SCRIPTED_VARIANTS))
def test_script_matches_eager_at_any_size_and_in_training(variant: str) -> None:
    """``torch.jit.script`` (the Model Zoo's plain ``ckpt_export``) keeps every branch: sizes with and
    without local windows, batches, and AMIR's balance loss in training mode, bit for bit."""
    torch.manual_seed(0)
    model = SCRIPTED_VARIANTS[variant]()
    for parameter in model.parameters():  # zero-initialised scales would hide the generated kernels
        torch.nn.init.normal_(parameter, std=0.2)
    scripted = torch.jit.script(model.eval())
    _, other = slice_pair()
    inputs = (other, torch.rand(2, 1, 61, 77), torch.rand(1, 1, 24, 40))
    with torch.no_grad():
        for x in inputs:
            torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-6)
    model.train()
    scripted.train()
    x = torch.rand(2, 1, 32, 48)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)
    got = scripted(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if variant == "AMIR":
        assert isinstance(got, tuple) and float(got[1]) > 0


def test_scripted_network_survives_save_and_load(tmp_path) -> None:
    model = TAT(dim=8, tlc_window=48, **SMALL).eval()
    path = tmp_path / "tat.ts"
    torch.jit.script(model).save(str(path))
    loaded = torch.jit.load(str(path))
    x = torch.rand(1, 1, 70, 52)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["TAT", "AMIR"])
def test_trace_matches_eager_on_a_new_input_and_refuses_other_sizes(name: str) -> None:
    model = small_network(name)
    traced_on, other = slice_pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, traced_on)
    with torch.no_grad():
        for x in (traced_on, other):
            assert float((traced(x) - model(x)).abs().max()) <= 1e-4
    assert model.traced_size == (128, 128)
    with pytest.raises(Exception, match="valid only for slices of size 128x128"):
        traced(torch.rand(1, 1, 256, 256))


@pytest.mark.parametrize("name", ["TAT", "AMIR"])
def test_onnx_export_matches_eager(name: str) -> None:
    model = small_network(name)
    traced_on, other = slice_pair()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (traced_on,), buffer)
    session = onnxruntime.InferenceSession(buffer.getvalue())
    input_name = session.get_inputs()[0].name
    for x in (traced_on, other):
        onnx_out = session.run(None, {input_name: x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(onnx_out - model(x).numpy()).max() <= 1e-4
    assert session.get_inputs()[0].shape == [1, 1, 128, 128]  # the export states its size
    with pytest.raises(Exception):
        session.run(None, {input_name: np.zeros((1, 1, 256, 256), dtype=np.float32)})


def test_onnx_export_holds_the_weights_and_little_else() -> None:
    """Local windows active at every level (256x256, windows of 192 // heads) must not bake
    map-sized buffers into the file: the TorchScript exporter (MONAI's ``convert_to_onnx``) once
    wrote 239 MB for the 11 MB demo TAT. The file stays under 2x the float32 weights + 1 MB, and
    ONNX Runtime still matches eager on an input it was not traced with."""
    model = TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
    traced_on, other = torch.rand(1, 1, 256, 256), torch.linspace(0, 2, 256).reshape(1, 1, 1, 256).expand(1, 1, 256, 256)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (traced_on,), buffer, dynamo=False)
    file_bytes, weight_bytes = len(buffer.getvalue()), sum(p.numel() for p in model.parameters()) * 4
    assert file_bytes < 2 * weight_bytes + 2**20, f"{file_bytes} bytes for {weight_bytes} bytes of weights"
    session = onnxruntime.InferenceSession(buffer.getvalue())
    input_name = session.get_inputs()[0].name
    for x in (traced_on, other.contiguous()):
        with torch.no_grad():
            assert np.abs(session.run(None, {input_name: x.numpy()})[0] - model(x).numpy()).max() <= 1e-4
