"""What a task contributes to training: its loss, its inference and its metrics -- and how its targets,
predictions and metrics are shown (pictures, legend, metric report).

A batch is a dict: ``image`` (B x C x H x W float), ``target`` (class ids B, a
label map B x H x W with ignore 255, or a depth map), and optional extras
(``index``, ``contrast_idx``...) that distillation losses may use.

A model's output is a tensor of scores, or a dict with ``'out'`` (the scores)
and auxiliary entries (``'aux'``) in training mode.

Dataset metadata: a dataset may carry ``class_names`` (list of str) and, for segmentation, ``palette``
(list of RGB tuples) as attributes; :func:`dataset_metadata` collects them, and tasks accept them as
constructor arguments (``TASKS.build(cfg, **dataset_metadata(dataset))`` offers them as defaults; a task
that does not take one ignores it). Tasks never guess them from ``num_classes``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

METADATA = ("class_names", "palette")
"""Dataset attributes a task may take as constructor arguments."""


def dataset_metadata(dataset: Any) -> dict[str, Any]:
    """The :data:`METADATA` attributes ``dataset`` defines (wrappers forward them), without the ``None`` ones:
    keyword defaults for building its task."""
    out = {}
    for name in METADATA:
        value = getattr(dataset, name, None)
        if value is not None:
            out[name] = list(value)
    return out


def main_output(output: Any) -> torch.Tensor:
    """The prediction tensor of a model output: ``out`` of a dict that has one (a dict without ``out``, e.g. a
    multi-task model's ``{'seg': ..., 'depth': ...}``, is returned as it is)."""
    return output["out"] if isinstance(output, dict) and "out" in output else output


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
    """Base task. Subclasses set ``metrics``, ``primary_metric`` and ``higher_is_better``.

    Presentation (used by :mod:`densekd.engine.visualize` and the tools, which know nothing task-specific):

    * :meth:`draw_target` / :meth:`draw_prediction`: one sample's target / prediction as an ``H x W x 3``
      uint8 RGB picture (not defined here: a task without pictures raises ``NotImplementedError``);
    * :meth:`panels`: the titled pictures of one sample after the input image (default: the ground truth,
      then one per model);
    * :meth:`legend`: a colour key picture, or ``None``;
    * :meth:`metric_report`: Markdown details of a metrics dict beyond the headline numbers ('' by default).
    """

    metrics: tuple[str, ...] = ()
    primary_metric: str = ""
    higher_is_better: bool = True
    class_names: list[str] | None = None
    target_key: str = "target"  # the batch key of the ground truth

    def loss(self, output: Any, batch: dict) -> dict[str, torch.Tensor]:
        """Task loss terms (names without the ``loss/`` prefix), each already weighted."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Evaluation-time prediction scores for a batch of images."""
        return main_output(model(image))

    def evaluator(self) -> Evaluator:
        raise NotImplementedError

    # -- deployment ---------------------------------------------------------------------------------------
    output_names: tuple[str, ...] = ("output",)
    """Names of :meth:`deploy_output`'s tensors, in order (the outputs of an exported graph)."""

    def deploy_output(self, output: Any, image: torch.Tensor):
        """The model's raw ``output`` for the input ``image`` as the tensor(s) a deployed network returns: one
        forward pass, no test-time augmentation (default: the main output tensor, :func:`main_output`). A task
        returning several tensors returns a tuple in :attr:`output_names` order."""
        out = main_output(output)
        if not isinstance(out, torch.Tensor):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise ValueError(f"{type(self).__name__}: the model returns {got}, not one tensor; a model with several "
                             f"outputs needs a task that names them (e.g. task=dict(type='multitask', ...))")
        return out

    def result_maps(self, prediction: Any) -> list[tuple[str, np.ndarray]]:
        """One sample's :meth:`predict` output (without the batch dimension) as benchmark result maps
        ``[(kind, H x W array)]`` (``'label'``: class ids, ``'depth'``: metres) for the dataset to write in its
        official format (``tools/test.py --format-only``)."""
        raise NotImplementedError(f"{type(self).__name__} writes no benchmark-format predictions (segmentation and "
                                  f"depth tasks do)")

    def draw_overlay(self, image: np.ndarray, prediction: Any) -> np.ndarray:
        """One sample's prediction blended over its ``H x W x 3`` uint8 image (``--format-only --overlay``)."""
        raise NotImplementedError(f"{type(self).__name__} draws no overlays (segmentation tasks do)")

    def is_better(self, new: float, old: float | None) -> bool:
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old

    # -- presentation -------------------------------------------------------------------------------------
    def draw_target(self, target: Any) -> np.ndarray:
        """One sample's target (``sample[self.target_key]``) as an ``H x W x 3`` uint8 RGB picture."""
        raise NotImplementedError(f"{type(self).__name__} draws no pictures (it defines no draw_target)")

    def draw_prediction(self, prediction: torch.Tensor) -> np.ndarray:
        """One sample's prediction (:meth:`predict`'s output without the batch dimension) as ``H x W x 3``
        uint8 RGB."""
        raise NotImplementedError(f"{type(self).__name__} draws no pictures (it defines no draw_prediction)")

    def panels(self, sample: dict, predictions: Mapping[str, torch.Tensor]) -> list[tuple[str, np.ndarray]]:
        """``(title, H x W x 3 uint8)`` pictures of one sample, shown after its input image: the ground truth,
        then each prediction under its key (``predictions``: title -> :meth:`predict` output for the sample)."""
        out = [("ground truth", self.draw_target(sample[self.target_key]))]
        out += [(str(title), self.draw_prediction(pred)) for title, pred in predictions.items()]
        return out

    def legend(self) -> np.ndarray | None:
        """A colour key for the pictures (``H x W x 3`` uint8), or ``None`` when they need none."""
        return None

    def metric_report(self, metrics: Mapping[str, float]) -> str:
        """Markdown details of ``metrics`` (e.g. a per-class table); '' when the task has none."""
        return ""
