"""The default strategy: one student distilled from frozen teachers (or trained alone without terms).

Per iteration: the :class:`~densekd.distill.distiller.Distiller` (student + loss parts, DDP-wrapped) returns
the weighted task and distillation losses, their sum is back-propagated (AMP, accumulation and clipping by
the :class:`~densekd.engine.step.Step`), the student's optimiser steps, then the critics of adversarial
terms take their own steps (:mod:`densekd.strategies.critics`).

Two-stage terms (:class:`~densekd.losses.base.InitStage`: AB, FT, FSP) add the phase ``'init'`` before the
main schedule: ``init_epochs`` epochs (RepDistiller: 30) of SGD on the terms' ``init_parameters()`` (and the
student where a term trains it) with ``init_lr`` (default: the main optimiser's lr), the main optimiser's
momentum and weight decay, constant learning rate, each process's gradients averaged by hand.

Config::

    strategy = dict(type='distillation', init_epochs=30, init_lr=None)   # the defaults; the section is optional
"""
from __future__ import annotations

import torch

from densekd.data.multiview import find_wrapper
from densekd.data.teacher_cache import TeacherCacheDataset
from densekd.distill.cache import check_cache
from densekd.distill.distiller import Distiller
from densekd.engine.builder import build_student, build_teachers, calibrate_batchnorm, probe_batch, teacher_configs
from densekd.engine.optim import build_optimizer
from densekd.registry import STRATEGIES
from densekd.strategies.base import BuildContext, Phase, Strategy
from densekd.strategies.critics import CriticSteps


@STRATEGIES.register("distillation")
class DistillationStrategy(Strategy):
    """Teachers -> one student through the config's ``distill`` terms (see the module docstring). With the config
    key ``teacher_cache`` the teachers' taps come from the cache the training set reads (checked at start-up).

    Args:
        init_epochs: length of the initialisation phase of AB / FT / FSP terms (0 skips it).
        init_lr: its learning rate (default: ``optimizer.lr``; RepDistiller's FT paraphraser uses 0.01 for
            ResNet/WRN students).
    """

    reads_teacher_cache = True

    def __init__(self, ctx: BuildContext, init_epochs: int = 30, init_lr: float | None = None):
        super().__init__(ctx)
        cfg = ctx.cfg
        student = build_student(cfg, info=ctx.info, warn=ctx.warn)
        teachers, inputs, untrained = build_teachers(cfg, ctx.synthetic, warn=ctx.warn)
        for teacher, key, random_init in zip(teachers, inputs, untrained):
            if random_init:
                calibrate_batchnorm(teacher, ctx.calibration_batches(), key)
        self.module = Distiller(student, ctx.task, teachers, cfg.get("distill", []),
                                task_weight=float(cfg.get("task_weight", 1.0)),
                                probe=probe_batch(ctx.train_set) if cfg.get("distill") else None,
                                num_classes=getattr(ctx.train_set, "num_classes", None),
                                num_data=len(ctx.train_set), teacher_inputs=inputs, student_input=ctx.student_input)
        cache = find_wrapper(ctx.train_set, TeacherCacheDataset) if cfg.get("teacher_cache") else None
        if cache is not None:  # the training set reads the teachers' taps from the cache: check it, then use it
            check_cache(cache.attrs, self.distiller, teacher_configs(cfg), cache.path)
            self.distiller.use_teacher_cache()
        student_params = sum(p.numel() for p in student.parameters())
        for name, n in self.distiller.oversized_connectors():
            ctx.warn(f"distill term {name!r}: its connectors have {n:,} parameters, more than the student's "
                     f"{student_params:,}; a linear connector on a flattened feature map is usually the cause: use "
                     f"connector='auto' (identity for equal shapes, a 1x1 conv between maps)")
        separate = {id(p) for p in self.distiller.separate_parameters()}
        self.optimizer = build_optimizer(cfg.get("optimizer", dict(type="SGD", lr=0.1)), [self.distiller], separate,
                                         named=student)
        self.critics = CriticSteps(self.distiller)
        self.init_total = 0
        self.init_optimizer = None
        if self.distiller.init_terms() and int(init_epochs) > 0:
            self.init_total = int(init_epochs) * ctx.iters_per_epoch
            ocfg = dict(cfg.get("optimizer", {}))
            self.init_optimizer = torch.optim.SGD(self.distiller.init_parameters(),
                                                  lr=float(init_lr if init_lr is not None else ocfg.get("lr", 0.05)),
                                                  momentum=ocfg.get("momentum", 0.9),
                                                  weight_decay=ocfg.get("weight_decay", 0.0))

    @property
    def distiller(self) -> Distiller:
        return self.module

    @property
    def student(self) -> torch.nn.Module:
        return self.distiller.student

    # -- what trains ---------------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"student": self.optimizer, **self.critics.named_optimizers()}
        if self.init_optimizer is not None:
            opts["init"] = self.init_optimizer
        return opts

    def scheduled(self) -> list[str]:
        return ["student", *self.critics.named_optimizers()]

    def phases(self) -> list[Phase]:
        return [Phase("init", self.init_total)]  # 0 iterations without two-stage terms (summary: init_iters 0)

    def has_idle_parameters(self) -> bool:  # init-stage parts, frozen paraphrasers
        return bool(self.distiller.init_terms() or self.distiller.separate_parameters())

    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        if step.phase == "init":
            return self._init_step(batch, step)
        self.distiller.epoch = step.epoch
        losses = step.forward_backward(batch, self.optimizer)
        if losses is None:
            return None
        if step.step_now and not step.optimizer_step(self.optimizer):
            return losses  # non-finite gradients, skipped (train.skip_nonfinite): the critics skip this step too
        self.critics.step(step)
        return losses

    def _init_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        with step.autocast():
            losses = self.distiller.init_forward(batch)
        self.init_optimizer.zero_grad(set_to_none=True)
        if not step.check_finite(losses, f"init iteration {step.iter + 1}"):
            return None
        sum(losses.values()).backward()
        params = [p for g in self.init_optimizer.param_groups for p in g["params"]]
        step.average_grads(params)
        if not step.finite_grads(params, "the init optimiser's parameters"):
            self.init_optimizer.zero_grad(set_to_none=True)
            return losses
        step.clip(params)
        self.init_optimizer.step()
        return losses

    def phase_finished(self, name: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    # -- evaluation, devices, checkpoints -------------------------------------------------------------------
    def eval_models(self) -> dict[str, torch.nn.Module]:
        return {"student": self.student}

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        super().to(device, memory_format)
        self.distiller.teachers_to(device, memory_format)

    def state_dict(self) -> dict:
        return {
            "distill": self.distiller.distill_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "d_optimizers": self.critics.state_dict(),
            "init_optimizer": self.init_optimizer.state_dict() if self.init_optimizer else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.distiller.load_distill_state_dict(state["distill"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.critics.load_state_dict(state.get("d_optimizers", {}))
        if self.init_optimizer is not None and state.get("init_optimizer"):
            self.init_optimizer.load_state_dict(state["init_optimizer"])

    def summary(self) -> dict:
        return {"teachers": len(self.distiller.teachers), "distill": [t.name for t in self.distiller.terms]}
