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
evaluated on its own: ``summary.json`` lists each student's final and best metrics under ``models``.

Config::

    model = dict(type='resnet32')                                 # the first student (the primary model)
    strategy = dict(type='mutual_learning', peers=[dict(type='resnet32')],   # K - 1 more students
                    peer_loss=dict(type='KD', T=1.0), weight=1.0)
"""
from __future__ import annotations

import torch
from torch import nn

from densekd.config import Config, ConfigError
from densekd.engine.builder import build_model, build_student
from densekd.engine.optim import build_optimizer
from densekd.losses.base import check_capabilities
from densekd.registry import LOSSES, STRATEGIES
from densekd.strategies.base import BuildContext, Strategy
from densekd.tasks.base import batch_input, main_output


def peer_names(n_peers: int) -> list[str]:
    return ["student"] + [f"peer{i + 1}" for i in range(n_peers)]


class Cohort(nn.Module):
    """The students as one module: ``forward(batch) -> (outputs, losses)`` with ``'<name>/<task term>'`` and
    ``'<name>/mutual'`` per student."""

    def __init__(self, students: list[nn.Module], names: list[str], task, peer_loss: nn.Module, weight: float,
                 input_key: str):
        super().__init__()
        self.students = nn.ModuleList(students)
        self.names = list(names)
        self.task = task
        self.peer_loss = peer_loss
        self.weight = float(weight)
        self.input_key = input_key

    def forward(self, batch: dict):
        x = batch_input(batch, self.input_key, "the students")
        outputs = [m(x) for m in self.students]
        preds = [main_output(o) for o in outputs]
        extra = dict(batch)
        losses = {}
        for k, (name, out) in enumerate(zip(self.names, outputs)):
            for term, value in self.task.loss(out, batch).items():
                losses[f"{name}/{term}"] = value
            peers = [preds[j].detach() for j in range(len(preds)) if j != k]
            losses[f"{name}/mutual"] = self.weight * sum(self.peer_loss(preds[k], p, **extra) for p in peers) / len(peers)
        return outputs, losses


@STRATEGIES.register("mutual_learning")
class MutualLearningStrategy(Strategy):
    """Deep mutual learning of ``1 + len(peers)`` students (see the module docstring).

    Args:
        peers: model configs of the students beside ``model`` (at least one).
        peer_loss: the loss between a student's output and each peer's (default ``dict(type='KD', T=1.0)``).
        weight: weight of the peer term (paper: 1).
        peer_optimizers: one dict per peer merged over the config's ``optimizer`` (e.g. ``[dict(lr=0.01)]``
            for a peer with its own learning rate); by default every student uses ``optimizer``. Every
            optimiser follows the run's learning-rate schedule from its own base rate.
    """

    def __init__(self, ctx: BuildContext, peers: list[dict] = (), peer_loss: dict | None = None,
                 weight: float = 1.0, peer_optimizers: list[dict] | None = None):
        super().__init__(ctx)
        cfg = ctx.cfg
        if not peers:
            raise ConfigError("strategy 'mutual_learning' needs peers=[dict(type=...), ...]: the students trained "
                              "beside `model`")
        for key in ("teacher", "teachers", "distill"):
            if cfg.get(key):
                raise ConfigError(f"strategy 'mutual_learning' trains its students from each other; remove "
                                  f"`{key}` from the config (or use strategy 'distillation')")
        self.names = peer_names(len(peers))
        students = [build_student(cfg, info=ctx.info, warn=ctx.warn)] + [build_model(p, where=f"strategy.peers.{i}") for i, p in enumerate(peers)]
        loss = LOSSES.build(dict(peer_loss or dict(type="KD", T=1.0)), where="strategy.peer_loss")
        check_capabilities(loss)
        self.module = Cohort(students, self.names, ctx.task, loss, weight, ctx.student_input)
        ocfg = dict(cfg.get("optimizer", dict(type="SGD", lr=0.1)))
        if peer_optimizers is not None and len(peer_optimizers) != len(peers):
            raise ConfigError(f"strategy.peer_optimizers has {len(peer_optimizers)} entries for {len(peers)} peers; "
                              f"give one dict per peer (an empty dict keeps `optimizer`)")
        per_student = [ocfg] + [dict(ocfg, **o) for o in (peer_optimizers or [{}] * len(peers))]
        self._optimizers = {name: build_optimizer(o, [m], named=m)
                            for name, o, m in zip(self.names, per_student, students)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._optimizers)

    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        with step.accumulating():
            with step.autocast():
                _, losses = step.model(batch)
            if not step.check_finite(losses, f"iteration {step.iter + 1}"):
                for opt in self._optimizers.values():
                    opt.zero_grad(set_to_none=True)
                return None
            step.backward(sum(losses.values()))
        if step.step_now:
            step.optimizer_step(*self._optimizers.values())  # checks every student's gradients first
        return losses

    def eval_models(self) -> dict[str, nn.Module]:
        return dict(zip(self.names, self.module.students))

    def summary(self) -> dict:
        return {"students": self.names, "peer_loss": type(self.module.peer_loss).__name__}

    @classmethod
    def eval_model_configs(cls, cfg: Config, peers: list[dict] = (), **kwargs) -> dict[str, dict]:
        return dict(zip(peer_names(len(peers)), [cfg["model"], *peers]))
