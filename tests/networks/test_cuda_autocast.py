"""The networks under CUDA autocast's op rules, emulated on CPU (see ``cuda_autocast.py``).

CPU autocast keeps softmax / exp / norms in bf16, so it hid two failures a GPU would show at once:
AMIR's routing mixed float32 gates with half logits in ``scatter`` (a RuntimeError), and channel
attention's un-normalised ``q^T k`` over a whole slice overflowed fp16 (NaN output). Here every
network runs with the shipped weights in bf16 and fp16 at 128 and 256 pixels (TAT's attention is
global at 128 and in TLC windows at 256) and must stay finite and close to float32.

Tolerance, on the model's [0, 1] intensity scale: max |half - float32| <= 0.02 for bf16 (8-bit
mantissa) and <= 0.01 for fp16 (11-bit), mean <= 2e-3. Measured with the shipped weights: bf16
max 0.004-0.007, fp16 max 0.0007-0.0033.
"""

from __future__ import annotations

import pytest
import torch

from monai_tat.inference.models import load_model
from monai_tat.networks import build_network
from monai_tat.networks.blocks import ChannelAttention
from tests.networks.cuda_autocast import EmulatedCudaAutocast

MAX_ABS = {torch.bfloat16: 0.02, torch.float16: 0.01}
MEAN_ABS = 2e-3
PRECISIONS = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="fp16")]
_OUTPUTS: dict[tuple, torch.Tensor] = {}


@pytest.fixture(scope="module")
def shipped() -> dict[str, torch.nn.Module]:
    return {name: load_model(name) for name in ("tat", "amir")}


def _image(size: int) -> torch.Tensor:
    """A smooth phantom with noise, ``(1, 1, size, size)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(size)
    axis = torch.linspace(-1, 1, size)
    disc = ((axis[:, None] ** 2 + axis[None, :] ** 2) < 0.6).float() * 0.5 + 0.2
    return (disc + 0.05 * torch.randn(size, size, generator=generator)).clamp(0, 1)[None, None]


def _run(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    with torch.inference_mode():
        if dtype is None:
            y = model(x)
        else:
            with EmulatedCudaAutocast(dtype) as mode:
                y = model(x)
            assert mode.counts["low"] > 0 and mode.counts["float32"] > 0  # the rules really acted
    y = y[0] if isinstance(y, tuple) else y
    return y.float()


def _float32(key: tuple, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if key not in _OUTPUTS:  # one float32 reference per network and size
        _OUTPUTS[key] = _run(model, x, None)
    return _OUTPUTS[key]


def _assert_close_to_float32(half: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> None:
    assert torch.isfinite(half).all(), "non-finite output under emulated CUDA autocast"
    difference = (half - reference).abs()
    assert difference.max() <= MAX_ABS[dtype], f"max |half - float32| = {float(difference.max()):.4g}"
    assert difference.mean() <= MEAN_ABS, f"mean |half - float32| = {float(difference.mean()):.4g}"


@pytest.mark.parametrize("dtype", PRECISIONS)
@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("name", ["tat", "amir"])
def test_shipped_networks_under_emulated_cuda_autocast(shipped, name, size, dtype) -> None:
    model = shipped[name]
    x = _image(size)
    reference = _float32((name, size), model, x)
    _assert_close_to_float32(_run(model, x, dtype), reference, dtype)


def test_tat_attention_is_global_at_128_and_windowed_at_256(shipped) -> None:
    """The two sizes above exercise both attention paths of the shipped TAT."""
    windows = [m.local_window for m in shipped["tat"].modules() if isinstance(m, ChannelAttention)]
    level1 = max(w for w in windows if w is not None)  # the level-1 window (one head)
    assert 128 <= level1 < 256


@pytest.mark.parametrize("dtype", PRECISIONS)
@pytest.mark.parametrize("size", [128, 256])
def test_restormer_with_large_activations_under_emulated_cuda_autocast(size, dtype) -> None:
    """No Restormer weights ship: a small seeded one whose q, k projections are scaled x20, so the
    un-normalised ``q^T k`` over the slice is far above fp16's 65504 (it was NaN before)."""
    torch.manual_seed(0)
    model = build_network("Restormer", dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8]).eval()
    largest_gram = 0.0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ChannelAttention):
                module.qkv.weight[: 2 * module.qkv.out_channels // 3].mul_(20.0)
    x = _image(size)

    def record(module: ChannelAttention, inputs: tuple, _output: torch.Tensor) -> None:
        nonlocal largest_gram
        qkv = module.qkv_dwconv(module.qkv(inputs[0])).flatten(2)  # (B, 3C, P)
        c = qkv.shape[1] // 3
        largest_gram = max(largest_gram, float((qkv[:, :c] @ qkv[:, c : 2 * c].transpose(1, 2)).abs().max()))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, ChannelAttention)]
    reference = _run(model, x, None)  # small: run each time, so the hooks see it
    for hook in hooks:
        hook.remove()
    assert largest_gram > 65504 * 4  # the float32 run confirms the product would overflow fp16
    _assert_close_to_float32(_run(model, x, dtype), reference, dtype)


def test_emulation_reproduces_cuda_casting_rules() -> None:
    """The mode's rules themselves: products go half, softmax / exp / sums go float32, and an op
    outside the lists meeting both raises as on a GPU."""
    a = torch.randn(4, 4)
    with EmulatedCudaAutocast(torch.float16):
        product = a @ a
        assert product.dtype == torch.float16
        assert torch.softmax(product, dim=-1).dtype == torch.float32
        assert product.exp().dtype == torch.float32
        assert product.sum().dtype == torch.float32
        assert product.square().dtype == torch.float32  # square decomposes to pow
        assert (product + 1).dtype == torch.float16
        assert a.double().mm(a.double()).dtype == torch.float64  # float64 is not eligible
        with pytest.raises(RuntimeError, match="scatter"):
            torch.zeros_like(product).scatter(1, torch.zeros(4, 1, dtype=torch.long), product.exp()[:, :1])
