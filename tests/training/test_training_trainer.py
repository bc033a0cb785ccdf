"""IterationTrainer with a stand-in network: loss parameters learn, EMA is saved, best is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from monai.data import DataLoader

from monai_tat.losses import TaskAdaptiveLoss
from monai_tat.training import IterationTrainer, TaskBalancedBatchSampler, create_ema


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _loader(num: int = 6) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    tasks = ["ct", "pet", "mri"] * (num // 3)
    data = [
        {"image": torch.rand(1, 8, 8, generator=g), "label": torch.rand(1, 8, 8, generator=g), "task": t}
        for t in tasks
    ]
    return DataLoader(data, batch_sampler=TaskBalancedBatchSampler(tasks, samples_per_task=1, seed=0))


def _trainer(tmp_path: Path, validator=None, val_interval: int = 0, iterations: int = 6) -> IterationTrainer:
    torch.manual_seed(0)
    net, loss = _Tiny(), TaskAdaptiveLoss()
    opt = torch.optim.AdamW([*net.parameters(), *loss.parameters()], lr=1e-2, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iterations, eta_min=1e-7)
    return IterationTrainer(
        net, loss, opt, _loader(), iterations, lr_scheduler=sched, ema=create_ema(net, 0.5),
        validator=validator, val_interval=val_interval, ckpt_dir=tmp_path / "models", log_interval=2,
    )


def test_trains_loss_parameters_and_saves_ema(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    loss_before = [p.detach().clone() for p in trainer.loss_function.parameters()]
    net_before = trainer.network.conv.weight.detach().clone()
    result = trainer.run()
    assert result["iterations"] == 6 and torch.isfinite(torch.tensor(result["last_loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(loss_before, trainer.loss_function.parameters()))
    assert not torch.equal(net_before, trainer.network.conv.weight)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-7)  # cosine reached eta_min
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    ema_weight = trainer.evaluation_model().conv.weight
    torch.testing.assert_close(saved["conv.weight"], ema_weight.detach())
    assert not torch.allclose(saved["conv.weight"], trainer.network.conv.weight)  # EMA, not raw weights


def test_keeps_the_best_validated_weights(tmp_path: Path) -> None:
    scores = iter([1.0, 3.0, 2.0])
    seen: dict[str, torch.Tensor] = {}

    def validator(model: nn.Module, tag: str) -> float:
        seen[tag] = model.conv.weight.detach().clone()
        return next(scores)

    trainer = _trainer(tmp_path, validator=validator, val_interval=2)
    result = trainer.run()
    assert sorted(seen) == ["iteration_0000002", "iteration_0000004", "iteration_0000006"]
    assert result["best_iteration"] == 4 and result["best_score"] == 3.0
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    torch.testing.assert_close(saved["conv.weight"], seen["iteration_0000004"])


def test_diverging_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.loss_function = lambda *a, **k: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(FloatingPointError, match="learning rate"):
        trainer.run()
