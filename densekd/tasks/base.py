"""What a task contributes to training: its loss, its inference and its metrics.

A batch is a dict: ``image`` (B x C x H x W float), ``target`` (class ids B, a
label map B x H x W with ignore 255, or a depth map), and optional extras
(``index``, ``contrast_idx``...) that distillation losses may use.

A model's output is a tensor of scores, or a dict with ``'out'`` (the scores)
and auxiliary entries (``'aux'``) in training mode.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def main_output(output: Any) -> torch.Tensor:
    """The prediction tensor of a model output (``out`` of a dict)."""
    return output["out"] if isinstance(output, dict) else output


def batch_input(batch: dict, key: str, who: str) -> torch.Tensor:
    """``batch[key]``: the input a network reads (``student_input``, ``teacher.input``), or a KeyError naming
    the keys the batch has and the setting to change."""
    if key not in batch:
        raise KeyError(f"{who} reads batch[{key!r}] but the batch has keys {sorted(batch)}; set student_input "
                       f"/ teacher.input to one of them, or use a dataset that yields {key!r}")
    return batch[key]


class Evaluator:
    """Accumulates sufficient statistics as tensors, so ranks can sum them.

    Subclasses fill ``self.state`` (name -> tensor) in :meth:`update` and turn
    it into metrics in :meth:`compute`.
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        raise NotImplementedError

    def accumulate(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64 if value.is_floating_point() else torch.int64)
        self.state[name] = self.state[name] + value if name in self.state else value.clone()

    def reduce(self, all_reduce_sum) -> None:
        """Sum the state across ranks with ``all_reduce_sum(tensor) -> tensor``."""
        self.state = {k: all_reduce_sum(v) for k, v in sorted(self.state.items())}

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class Task:
    """Base task. Subclasses set ``metrics``, ``primary_metric`` and ``higher_is_better``."""

    metrics: tuple[str, ...] = ()
    primary_metric: str = ""
    higher_is_better: bool = True

    def loss(self, output: Any, batch: dict) -> dict[str, torch.Tensor]:
        """Task loss terms (names without the ``loss/`` prefix), each already weighted."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Evaluation-time prediction scores for a batch of images."""
        return main_output(model(image))

    def evaluator(self) -> Evaluator:
        raise NotImplementedError

    def is_better(self, new: float, old: float | None) -> bool:
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old
