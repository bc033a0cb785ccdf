"""Parameter counts, configurations, any slice size, batches, stop-gradient and ablations."""

from __future__ import annotations

import pytest
import torch

from monai_tat.networks import AMIR, TAT, Restormer, build_network, network_config, network_from_state_dict

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_parameter_counts() -> None:
    assert count_parameters(Restormer()) == 26_124_052
    assert count_parameters(TAT()) == 41_687_424
    assert sum(v.numel() for v in AMIR().state_dict().values()) == 23_540_504
    # "w/o weight generation" is exactly the Restormer baseline (paper Table 3: 26.12 M).
    assert count_parameters(TAT(weight_generation=False)) == 26_124_052


def test_other_sizes_build_and_scale_tren_with_dim() -> None:
    small = TAT(dim=16, num_blocks=(2, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8))
    assert small.tren.mlp[0].in_features == 80 and small.tren.stem.in_channels == 8
    assert count_parameters(small) < count_parameters(TAT()) / 10
    with pytest.raises(ValueError, match="even dim"):
        TAT(dim=7)
    with pytest.raises(ValueError, match="spatial_dims"):
        TAT(spatial_dims=3)


@pytest.mark.parametrize("network", [TAT, AMIR, Restormer])
@pytest.mark.parametrize("size", [(512, 512), (192, 400), (181, 217)])
def test_any_slice_size(network, size: tuple[int, int]) -> None:
    model = network(**TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, *size))
    assert out.shape == (1, 1, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize("network", [TAT, AMIR])
@pytest.mark.parametrize("size", [(256, 256), (181, 217)])
def test_batch_equals_one_by_one(network, size: tuple[int, int]) -> None:
    """Each sample of a batch is computed as if alone, local windows and routing included."""
    model = network(**TINY).double().eval()
    slices = torch.rand(3, 1, *size, dtype=torch.float64)
    with torch.no_grad():
        batched = model(slices)
        alone = torch.cat([model(slices[i : i + 1]) for i in range(3)])
    assert float((batched - alone).abs().max()) <= 1e-10


def test_tat_stop_gradient_blocks_encoder_gradients_through_tren() -> None:
    def encoder_gradient(stop_gradient: bool) -> float:
        model = TAT(**TINY, stop_gradient=stop_gradient)
        captured = {}
        model.tren.register_forward_hook(lambda module, args, output: captured.update(kernels=output))
        model(torch.rand(2, 1, 32, 32))
        sum(k.sum() for k in captured["kernels"].values()).backward()
        grads = [p.grad for p in model.encoder_level1.parameters()]
        return sum(float(g.abs().sum()) for g in grads if g is not None)

    assert encoder_gradient(stop_gradient=True) == 0.0
    assert encoder_gradient(stop_gradient=False) > 0.0


def test_tat_generate_all_parameters_ablation_is_per_sample() -> None:
    model = TAT(**TINY, generate_all_parameters=True).double().eval()
    with torch.no_grad():
        for level in (model.latent, model.decoder_level1):
            for scales in level.scales:
                for scale in scales.values():
                    scale.normal_()  # make the generated weights matter
        slices = torch.rand(2, 1, 40, 48, dtype=torch.float64)
        batched = model(slices)
        alone = torch.cat([model(slices[i : i + 1]) for i in range(2)])
    assert float((batched - alone).abs().max()) <= 1e-10
    rebuilt = network_from_state_dict(model.state_dict())
    assert rebuilt.config["generate_all_parameters"] is True


def test_amir_training_returns_balance_loss_and_paper_combine_differs() -> None:
    model = AMIR(**TINY).train()
    out, balance = model(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 1, 32, 32) and balance.ndim == 0 and float(balance) >= 0
    (out.abs().mean() + 0.001 * balance).backward()
    assert model.spatial_routing_encoder_level1.w_noise.grad is not None
    reference = AMIR(**TINY).eval()
    paper = AMIR(**TINY, combine="sum").eval()
    paper.load_state_dict(reference.state_dict())
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(reference(x), paper(x))


@pytest.mark.parametrize("network", [TAT, AMIR, Restormer])
def test_native_state_dict_round_trip(network) -> None:
    model = network(**TINY, heads=(1, 2, 2, 4)).eval()
    rebuilt = network_from_state_dict(model.state_dict())
    config = network_config(rebuilt)
    assert config["name"] == network.__name__ and config["heads"] == [1, 2, 2, 4]
    assert build_network(config.pop("name"), **config).config == rebuilt.config
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
