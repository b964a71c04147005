"""Image classification: cross-entropy (optionally label-smoothed), top-1/top-5 accuracy in percent."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from densekd.metrics.classification import topk_correct
from densekd.registry import TASKS
from densekd.tasks.base import Evaluator, Task, main_output


class ClassificationEvaluator(Evaluator):
    def update(self, pred: torch.Tensor, batch: dict) -> None:
        top1, top5 = topk_correct(pred, batch["target"], (1, 5))
        self.accumulate("correct1", torch.tensor(top1))
        self.accumulate("correct5", torch.tensor(top5))
        self.accumulate("count", torch.tensor(pred.shape[0]))

    def compute(self) -> dict[str, float]:
        n = max(int(self.state.get("count", torch.tensor(0))), 1)
        return {"top1": 100.0 * float(self.state["correct1"]) / n, "top5": 100.0 * float(self.state["correct5"]) / n}


@TASKS.register("classification")
class ClassificationTask(Task):
    """Cross-entropy on logits (B x num_classes); metrics ``top1``/``top5`` in percent.

    ``class_names``: the dataset's (offered by the builder), kept as ``self.class_names`` for reports; the
    loss and metrics do not use them. No pictures.
    """

    metrics = ("top1", "top5")
    primary_metric = "top1"

    def __init__(self, label_smoothing: float = 0.0, class_names: Sequence[str] | None = None):
        self.label_smoothing = label_smoothing
        if isinstance(class_names, str):
            raise ValueError(f"class_names must be a list of names; got the string {class_names!r}")
        self.class_names = [str(c) for c in class_names] if class_names is not None else None

    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(main_output(output), batch["target"], label_smoothing=self.label_smoothing)}

    def evaluator(self) -> Evaluator:
        return ClassificationEvaluator()

    output_names = ("logits",)
