"""Deep mutual learning: a cohort of students trained jointly, each taught by the others' predictions.

Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018. With ``K`` students and predictions
``p_k``, student ``k`` minimises ``L_k = task_loss_k + weight * 1/(K-1) * sum_{l != k} D_KL(p_l || p_k)``;
the peers' predictions are targets without gradient, so one backward pass of ``sum_k L_k`` gives every
student exactly the gradient of its own ``L_k``. The paper updates the students one after the other within
an iteration (student 2 sees student 1's updated prediction); here all students step together on the same
batch (the simultaneous variant, one forward per student per iteration), which is the departure.

The peer term is any distillation loss on the model outputs (default ``KD`` at ``T=1``:
``KL(softmax(p_l) || softmax(p_k))``, batch mean, the paper's ``D_KL``; ``PixelWiseKD`` for segmentation).
Every student has its own optimiser (the config's ``optimizer``) following the run's schedule, and is
evaluated on its own: ``summary.json`` lists each student's final and best metrics under ``models``. The
cohort mechanics (students, optimisers, steps, evaluation, ``student_inputs``) are
:mod:`densekd.strategies.cohort`'s, shared with KDCL.

Config::

    model = dict(type='resnet32')                                 # the first student (the primary model)
    strategy = dict(type='mutual_learning', peers=[dict(type='resnet32')],   # K - 1 more students
                    peer_loss=dict(type='KD', T=1.0), weight=1.0)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densekd.losses.base import check_capabilities
from densekd.registry import LOSSES, STRATEGIES
from densekd.strategies.base import BuildContext
from densekd.strategies.cohort import CohortStrategy, StudentCohort, peer_names

__all__ = ["Cohort", "MutualLearningStrategy", "peer_names"]


class Cohort(StudentCohort):
    """DML's cohort: ``'<name>/<task term>'`` and ``'<name>/mutual'`` per student (the mean of ``peer_loss``
    against every other student's detached prediction, times ``weight``)."""

    def __init__(self, students: list[nn.Module], names: list[str], task, peer_loss: nn.Module, weight: float,
                 input_key: str | Sequence[str]):
        super().__init__(students, names, task, input_key)
        self.peer_loss = peer_loss
        self.weight = float(weight)

    def cohort_losses(self, preds: list[torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        extra = dict(batch)
        losses = {}
        for k, name in enumerate(self.names):
            peers = [preds[j].detach() for j in range(len(preds)) if j != k]
            losses[f"{name}/mutual"] = self.weight * sum(self.peer_loss(preds[k], p, **extra) for p in peers) / len(peers)
        return losses


@STRATEGIES.register("mutual_learning")
class MutualLearningStrategy(CohortStrategy):
    """Deep mutual learning of ``1 + len(peers)`` students (see the module docstring).

    Args:
        peers: model configs of the students beside ``model`` (at least one).
        peer_loss: the loss between a student's output and each peer's (default ``dict(type='KD', T=1.0)``).
        weight: weight of the peer term (paper: 1).
        peer_optimizers: one dict per peer merged over the config's ``optimizer`` (e.g. ``[dict(lr=0.01)]``
            for a peer with its own learning rate); by default every student uses ``optimizer``. Every
            optimiser follows the run's learning-rate schedule from its own base rate.
        student_inputs: one training batch key per student (default: all read ``student_input``).
    """

    name = "mutual_learning"

    def __init__(self, ctx: BuildContext, peers: list[dict] = (), peer_loss: dict | None = None,
                 weight: float = 1.0, peer_optimizers: list[dict] | None = None,
                 student_inputs: list[str] | None = None):
        self._peer_loss = LOSSES.build(dict(peer_loss or dict(type="KD", T=1.0)), where="strategy.peer_loss")
        check_capabilities(self._peer_loss)
        self._weight = weight
        super().__init__(ctx, peers, peer_optimizers, student_inputs)

    def build_cohort(self, students: list[nn.Module], input_keys) -> Cohort:
        return Cohort(students, self.names, self.ctx.task, self._peer_loss, self._weight, input_keys)

    def summary(self) -> dict:
        return {**super().summary(), "peer_loss": type(self.module.peer_loss).__name__}
