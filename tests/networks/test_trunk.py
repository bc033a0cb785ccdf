"""The shared trunk: TAT's "w/o weight generation" ablation is the Restormer trunk, older keys still load."""

from __future__ import annotations

import torch

from monai_tat.networks import TAT, Restormer, network_from_state_dict
from monai_tat.networks.reference import load_checked_state_dict
from monai_tat.networks.trunk import LEVEL_WIDTHS, RestormerTrunk

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


def test_ablation_without_weight_generation_is_the_restormer_trunk() -> None:
    restormer = Restormer(**TINY).eval()
    ablation = TAT(**TINY, weight_generation=False, tlc=False).eval()
    assert list(ablation.state_dict()) == list(restormer.state_dict())
    ablation.load_state_dict(restormer.state_dict())
    x = torch.rand(2, 1, 40, 56)
    with torch.no_grad():
        assert torch.equal(ablation(x), restormer(x))


def test_older_ablation_checkpoints_with_the_restormer_prefix_still_load() -> None:
    source = TAT(**TINY, weight_generation=False).eval()
    legacy = {f"restormer.{key}": value for key, value in source.state_dict().items()}
    x = torch.rand(1, 1, 256, 256)  # local windows active at level 1

    plain = TAT(**TINY, weight_generation=False).eval()
    plain.load_state_dict(legacy)
    checked = TAT(**TINY, weight_generation=False).eval()
    load_checked_state_dict(checked, legacy)
    rebuilt = network_from_state_dict(legacy)
    assert isinstance(rebuilt, TAT) and rebuilt.config["weight_generation"] is False
    with torch.no_grad():
        expected = source(x)
        for model in (plain, checked, rebuilt):
            assert torch.equal(model(x), expected)


def test_every_network_is_one_trunk_with_levels_at_the_documented_widths() -> None:
    model = TAT(**TINY)
    assert isinstance(model, RestormerTrunk) and isinstance(Restormer(**TINY), RestormerTrunk)
    for name, multiple in LEVEL_WIDTHS.items():
        assert model.get_submodule(name)[0].norm1.weight.shape[0] == TINY["dim"] * multiple
    # Modules are registered in the reference's order: TREN, then the fusion head, last.
    top_level = list(dict.fromkeys(key.split(".")[0] for key in model.state_dict()))
    assert top_level[-3:] == ["tren", "fusion", "output"]


def test_a_constant_patch_through_a_fresh_network_gives_finite_gradients() -> None:
    """Air or padding crops are constant: with zero LayerNorm biases (a fresh network) q and k are
    all-zero columns, and the attention's norms must not turn that into NaN weights."""
    from monai_tat.networks import AMIR

    for net in (TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1),
                AMIR(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)):
        torch.manual_seed(0)
        patches = torch.rand(2, 1, 32, 32)
        patches[0] = 0.0
        out = net.train()(patches)
        out = out[0] if isinstance(out, tuple) else out
        out.abs().mean().backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), type(net).__name__
