"""Representation learning by distillation alone: no labels, no task loss, nothing to evaluate."""
from __future__ import annotations

from typing import Any

import torch

from densekd.registry import TASKS
from densekd.tasks.base import Evaluator, Task


class _NoMetrics(Evaluator):
    def update(self, pred: Any, batch: dict) -> None:
        pass

    def compute(self) -> dict[str, float]:
        return {}


@TASKS.register("representation")
class RepresentationTask(Task):
    """The student learns only from its distillation terms (e.g. CRD's cross-modal transfer, where an RGB
    teacher trains a depth network on unlabelled frame pairs): ``loss`` is empty and there are no metrics, so
    such a run saves ``last.pth`` only (no ``best.pth``). Judge the student afterwards in a later pipeline
    stage: a head trained on its frozen features (``load_from`` / ``pretrained`` + ``freeze``) or full
    fine-tuning. ``task_weight`` has no effect."""

    metrics: tuple[str, ...] = ()
    primary_metric = ""

    def loss(self, output: Any, batch: dict) -> dict[str, torch.Tensor]:
        return {}

    def evaluator(self) -> Evaluator:
        return _NoMetrics()
