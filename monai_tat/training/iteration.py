"""The training step: MONAI's own ``SupervisedTrainer`` iteration, with the objective also given the
low-quality input and the tasks of the batch.

``SupervisedTrainer`` calls ``loss_function(prediction, label)``. The package's objectives need
more (:mod:`monai_tat.losses`): TAT's task-adaptive loss reads the low-quality input of every
sample, the task-level ablation reads each sample's task, AMIR's loss reads the routing balance
term that the network returns beside the image. :class:`RestorationIteration` is the trainer's
``iteration_update``: for one iteration it binds the batch's input and tasks to the objective and
runs MONAI's iteration unchanged (forward, loss, backward, optimiser step, AMP, events).
"""

from __future__ import annotations

from typing import Any

from monai.utils import CommonKeys

__all__ = ["RestorationIteration"]


class RestorationIteration:
    """``iteration_update`` of a ``SupervisedTrainer`` training a :mod:`monai_tat.losses` objective.

    Args:
        task_key: key of the samples' task names in the batch.

    Example (config)::

        "trainer": {"_target_": "SupervisedTrainer", "loss_function": "@loss",
                    "iteration_update": {"_target_": "monai_tat.training.RestorationIteration"}, ...}
    """

    def __init__(self, task_key: str = "task") -> None:
        self.task_key = task_key

    def __call__(self, engine: Any, batch: dict[str, Any]) -> dict[str, Any]:
        objective = engine.loss_function
        tasks = batch.get(self.task_key) if isinstance(batch, dict) else None

        def bound_objective(prediction: Any, label: Any) -> Any:
            # The input as the network saw it (on the device), stored by the iteration before the forward pass.
            return objective(prediction, label, image=engine.state.output[CommonKeys.IMAGE], task=tasks)

        engine.loss_function = bound_objective
        try:
            return engine._iteration(engine, batch)
        finally:
            engine.loss_function = objective
