"""Cohorts: several students trained jointly from scratch, each with its own optimiser and its own metrics.

The shared base of the online strategies that have no fixed teacher (deep mutual learning,
:mod:`densekd.strategies.mutual`; KDCL, :mod:`densekd.strategies.kdcl`). What they share lives here:

* :class:`StudentCohort`, the trainable unit: the students as one ``nn.Module`` whose ``forward(batch)``
  runs every student on its own input key, adds each student's task terms as ``'<name>/<term>'`` and the
  method's cohort terms from :meth:`StudentCohort.cohort_losses` (the hook a method overrides);
* :class:`CohortStrategy`: builds the students (``model`` plus ``peers=[...]``), one optimiser per student
  (the config's ``optimizer``, optionally overridden per peer by ``peer_optimizers``), all following the run's
  learning-rate schedule from their own base rates; one backward pass of the sum of all terms per iteration
  (each student's cohort term sees the others' outputs detached, so every student gets exactly the gradient
  of its own loss) and one step of every optimiser; every student evaluated on its own (``summary.json``:
  ``models.<name>``).

Inputs: by default every student reads ``student_input`` (the config's, default ``'image'``);
``student_inputs=['image_0', 'image_1', ...]`` gives each student its own batch key in training, e.g. the
views of :class:`~densekd.data.multiview.MultiViewDataset`, which draws the augmentation once per view.
Evaluation always reads ``student_input`` (the validation set is not wrapped).

Cohort strategies take no teacher: a config with ``teacher``, ``teachers`` or ``distill`` is refused with a
one-line error (use strategy ``'distillation'`` for fixed teachers).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from densekd.config import Config, ConfigError
from densekd.engine.builder import build_model, build_student
from densekd.engine.optim import build_optimizer
from densekd.strategies.base import BuildContext, Strategy
from densekd.tasks.base import batch_input, main_output


def peer_names(n_peers: int) -> list[str]:
    """``['student', 'peer1', ...]``: the evaluated models' names (``model`` first, the primary model)."""
    return ["student"] + [f"peer{i + 1}" for i in range(n_peers)]


class StudentCohort(nn.Module):
    """The students as one module: ``forward(batch) -> (outputs, losses)``.

    ``losses`` holds ``'<name>/<term>'`` for every task term of every student and whatever
    :meth:`cohort_losses` returns. ``input_keys``: one batch key per student, or one key for all.
    """

    def __init__(self, students: Sequence[nn.Module], names: Sequence[str], task, input_keys: str | Sequence[str]):
        super().__init__()
        self.students = nn.ModuleList(students)
        self.names = list(names)
        self.task = task
        keys = [input_keys] * len(self.students) if isinstance(input_keys, str) else list(input_keys)
        if len(keys) != len(self.students):
            raise ConfigError(f"{len(keys)} student input keys {keys} for {len(self.students)} students; give one "
                              f"batch key per student (strategy.student_inputs)")
        self.input_keys = keys

    def forward(self, batch: dict):
        outputs = [m(batch_input(batch, key, f"student {name}"))
                   for m, key, name in zip(self.students, self.input_keys, self.names)]
        losses = {}
        for name, out in zip(self.names, outputs):
            for term, value in self.task.loss(out, batch).items():
                losses[f"{name}/{term}"] = value
        losses.update(self.cohort_losses([main_output(o) for o in outputs], batch))
        return outputs, losses

    def cohort_losses(self, preds: list[torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """The method's terms between the students (``preds``: each student's main output, with gradient)."""
        return {}


def refuse_teachers(cfg: Config, strategy: str) -> None:
    """A one-line error for a config that gives a cohort strategy a teacher (or distillation terms)."""
    for key in ("teacher", "teachers", "distill"):
        if cfg.get(key):
            raise ConfigError(f"strategy {strategy!r} trains its students from each other and takes no fixed teacher; "
                              f"remove `{key}` from the config (or use strategy 'distillation')")


class CohortStrategy(Strategy):
    """Base of the cohort strategies (see the module docstring). Subclasses set ``name`` (the registered
    strategy name, for messages) and implement :meth:`build_cohort`.

    Args:
        peers: model configs of the students beside ``model`` (at least one).
        peer_optimizers: one dict per peer merged over the config's ``optimizer`` (e.g. ``[dict(lr=0.01)]``);
            by default every student uses ``optimizer``.
        student_inputs: one training batch key per student (default: every student reads ``student_input``).
    """

    name = "cohort"

    def __init__(self, ctx: BuildContext, peers: Sequence[dict] = (), peer_optimizers: Sequence[dict] | None = None,
                 student_inputs: Sequence[str] | None = None):
        super().__init__(ctx)
        cfg = ctx.cfg
        if not peers:
            raise ConfigError(f"strategy {self.name!r} needs peers=[dict(type=...), ...]: the students trained "
                              f"beside `model`")
        refuse_teachers(cfg, self.name)
        self.names = peer_names(len(peers))
        if student_inputs is not None:
            if isinstance(student_inputs, str) or len(student_inputs) != len(self.names):
                raise ConfigError(f"strategy.student_inputs={student_inputs!r}: give a list of {len(self.names)} "
                                  f"batch keys, one per student ({', '.join(self.names)}), e.g. "
                                  f"{[f'image_{i}' for i in range(len(self.names))]} with data.train wrapped in "
                                  f"MultiViewDataset(views={len(self.names)})")
        keys = list(student_inputs) if student_inputs is not None else ctx.student_input
        students = [build_student(cfg, info=ctx.info, warn=ctx.warn)] + \
            [build_model(p, where=f"strategy.peers.{i}") for i, p in enumerate(peers)]
        self.module = self.build_cohort(students, keys)
        ocfg = dict(cfg.get("optimizer", dict(type="SGD", lr=0.1)))
        if peer_optimizers is not None and len(peer_optimizers) != len(peers):
            raise ConfigError(f"strategy.peer_optimizers has {len(peer_optimizers)} entries for {len(peers)} peers; "
                              f"give one dict per peer (an empty dict keeps `optimizer`)")
        per_student = [ocfg] + [dict(ocfg, **o) for o in (peer_optimizers or [{}] * len(peers))]
        self._optimizers = {name: build_optimizer(o, [m], named=m)
                            for name, o, m in zip(self.names, per_student, students)}

    def build_cohort(self, students: list[nn.Module], input_keys) -> StudentCohort:
        raise NotImplementedError

    @property
    def students(self) -> list[nn.Module]:
        return list(self.module.students)

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

    def summary(self) -> dict[str, Any]:
        return {"students": list(self.names)}

    @classmethod
    def eval_model_configs(cls, cfg: Config, peers: Sequence[dict] = (), **kwargs) -> dict[str, dict]:
        return dict(zip(peer_names(len(peers)), [cfg["model"], *peers]))
