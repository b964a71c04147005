"""The strategy layer: who trains and how one training step goes.

The :class:`~densekd.engine.trainer.Trainer` keeps the loop (batches, schedules, AMP, accumulation, clipping,
DDP, checkpoints, signals, records, evaluation cadence). A strategy owns everything that differs between ways
of training:

* its trainable unit ``module`` (an ``nn.Module`` whose ``forward(batch)`` the trainer may wrap in DDP) and
  any frozen models beside it (teachers), moved by :meth:`Strategy.to`;
* its optimisers (:meth:`Strategy.optimizers`: name -> optimiser; those named by
  :meth:`Strategy.scheduled` follow the run's learning-rate schedule, each from its own base rates);
* phases before the main schedule (:meth:`Strategy.phases`, e.g. the AB/FT/FSP initialisation stage);
* ``train_step(batch, step) -> losses`` for every iteration of every phase (``step`` is a
  :class:`~densekd.engine.step.Step`);
* what is evaluated (:meth:`Strategy.eval_models`: name -> model; the first is the primary model whose
  primary metric picks ``best.pth``) and what else goes into checkpoints (:meth:`Strategy.state_dict`; the
  trainer saves the evaluated models' weights itself, so a strategy's state holds everything else).

Configs choose one with ``strategy=dict(type=NAME, ...)`` (registered in ``STRATEGIES``); without a
``strategy`` section the run uses ``'distillation'``, which is plain supervised training when the config has
no ``distill`` terms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from densekd.config import Config


@dataclass
class Phase:
    """A stage of a strategy run before the main schedule: ``iters`` iterations, constant learning rates."""

    name: str
    iters: int


@dataclass
class BuildContext:
    """What the builders hand a strategy's constructor.

    ``cfg`` the validated run config; ``task``; ``train_set``; ``iters_per_epoch`` of the train loader;
    ``synthetic`` (missing teacher checkpoints are warnings); ``warn(msg)``; ``calibration_batches()``
    yields a few training batches outside the training order's RNG (for untrained teachers' BatchNorm);
    ``info(msg)`` (e.g. what ``load_from`` loaded; default: nowhere).
    """

    cfg: Config
    task: Any
    train_set: Any
    iters_per_epoch: int
    synthetic: bool
    warn: Callable[[str], None]
    calibration_batches: Callable[[], Iterable[dict]]
    info: Callable[[str], None] = field(default=lambda _msg: None)

    @property
    def student_input(self) -> str:
        return str(self.cfg.get("student_input", "image"))


class Strategy:
    """Base class; see the module docstring. Subclasses set ``self.module`` in ``__init__``."""

    module: nn.Module
    #: whether the strategy takes its teachers' taps from an offline teacher cache (config key ``teacher_cache``,
    #: :mod:`densekd.data.teacher_cache`); a strategy that runs teachers on inputs it makes (mixup, adversarial
    #: samples) or has no teachers does not
    reads_teacher_cache = False

    def __init__(self, ctx: BuildContext):
        self.ctx = ctx

    # -- what trains --------------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser of the strategy, by name (checkpointed by the trainer through state_dict)."""
        raise NotImplementedError

    def scheduled(self) -> list[str]:
        """Names of the optimisers whose learning rates follow the run's schedule (the first one's rate is
        logged as ``lr``)."""
        return list(self.optimizers())

    def phases(self) -> list[Phase]:
        """Phases before the main schedule (none by default)."""
        return []

    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        """One iteration of ``step.phase``: compute, back-propagate, step. Returns the losses to log (names
        without the ``loss/`` prefix) or None for a skipped step."""
        raise NotImplementedError

    def phase_finished(self, name: str) -> None:
        """Called once when phase ``name`` has run all its iterations."""

    def has_idle_parameters(self) -> bool:
        """True if some parameters of ``module`` get no gradient in the main phase (DDP must then look for
        unused parameters)."""
        return False

    # -- what is evaluated --------------------------------------------------------------------------------
    def eval_models(self) -> dict[str, nn.Module]:
        """Models to evaluate, by name; the first is the primary model."""
        raise NotImplementedError

    @property
    def primary_model(self) -> nn.Module:
        return next(iter(self.eval_models().values()))

    # -- devices, modes, checkpoints -----------------------------------------------------------------------
    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        self.module.to(device)
        if memory_format is not None:
            self.module.to(memory_format=memory_format)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def state_dict(self) -> dict:
        """Everything to resume exactly except the evaluated models' weights (the trainer saves those)."""
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers().items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])

    def summary(self) -> dict[str, Any]:
        """Strategy facts for ``summary.json``."""
        return {}

    @classmethod
    def eval_model_configs(cls, cfg: Config, **kwargs) -> dict[str, dict]:
        """The model configs of :meth:`eval_models`, by name, without building the strategy (``tools/test.py``)."""
        return {"student": cfg["model"]}
