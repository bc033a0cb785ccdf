"""WeightEMA: ema = decay * ema + (1 - decay) * weights after every iteration, warm-up, resumable state."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from monai_tat.training import WeightEMA


def _train(net: nn.Linear, values: list[float]):
    def step(engine, value):
        with torch.no_grad():
            net.weight.fill_(value)

    return Engine(step), values


def test_update_rule_after_every_iteration() -> None:
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = WeightEMA(net, decay=0.9)
    engine, values = _train(net, [3.0, 3.0])
    ema.attach(engine)
    engine.run(values, max_epochs=1)
    # starts as a copy (1.0), then 0.9 * 1 + 0.1 * 3 = 1.2, then 0.9 * 1.2 + 0.1 * 3 = 1.38
    torch.testing.assert_close(ema.ema_model.weight, torch.full((1, 2), 1.38))
    assert ema.ema_model is not net


def test_warmup_follows_the_network_first_and_state_round_trips() -> None:
    net = nn.Linear(1, 1)
    ema = WeightEMA(net, decay=0.99, warmup_iterations=3)
    engine, values = _train(net, [5.0, 7.0])
    ema.attach(engine)
    engine.run(values, max_epochs=1)
    # momentum 1 at the first step (a copy: 5), then halfway to 1 - decay: 0.505 * 7 + 0.495 * 5
    assert float(ema.ema_model.weight) == pytest.approx(0.505 * 7.0 + 0.495 * 5.0)
    state = ema.state_dict()
    assert state["warmup_step"] == 2 and set(state["model"]) == {"weight", "bias"}
    other = WeightEMA(nn.Linear(1, 1), decay=0.99, warmup_iterations=3)
    other.attach(Engine(lambda e, b: None))
    other.load_state_dict(state)
    torch.testing.assert_close(other.ema_model.weight, ema.ema_model.weight)
    assert other.momentum_scheduler.event_index == 2


def test_decay_out_of_range() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(nn.Linear(1, 1), decay=1.0)


def test_average_weights_is_the_elementwise_mean_and_refuses_other_networks():
    from monai_tat.errors import UserInputError
    from monai_tat.training import average_weights

    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5], dtype=torch.float16), "steps": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, -2.0]), "b": torch.tensor([1.5], dtype=torch.float16), "steps": torch.tensor(3)}
    mean = average_weights([a, b])
    torch.testing.assert_close(mean["w"], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(mean["b"], torch.tensor([1.0]))  # float16 averaged in float32
    assert mean["b"].dtype == torch.float32 and mean["steps"].item() == 3 and mean["steps"].dtype == torch.int64
    # a real network round trip: the mean loads back into the architecture
    nets = [nn.Linear(3, 2) for _ in range(3)]
    averaged = average_weights([n.state_dict() for n in nets])
    nn.Linear(3, 2).load_state_dict(averaged)
    torch.testing.assert_close(averaged["weight"], sum(n.weight.detach() for n in nets) / 3)

    weighted = average_weights([a, b], [0.25, 0.75])
    torch.testing.assert_close(weighted["w"], torch.tensor([2.5, -1.0]))
    for fractions in ([0.5], [0.6, 0.6], [1.5, -0.5]):
        with pytest.raises(UserInputError, match="fractions"):
            average_weights([a, b], fractions)

    with pytest.raises(UserInputError, match="at least two"):
        average_weights([a])
    with pytest.raises(UserInputError, match="keys differ"):
        average_weights([a, {"w": b["w"], "b": b["b"]}])
    with pytest.raises(UserInputError, match="shape of 'w'"):
        average_weights([a, {**b, "w": torch.zeros(3)}])
    with pytest.raises(UserInputError, match="'steps' differs"):
        average_weights([a, {**b, "steps": torch.tensor(4)}])
