"""Several tasks on one network: a model returning ``{name: prediction}`` (e.g. ``multitask_model``'s
``{'seg': logits, 'depth': depth}``) trained and evaluated on each task at once."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from densekd.registry import TASKS
from densekd.tasks.base import Evaluator, Task


class _Branch(nn.Module):
    """``model(x)[name]``, computing ``model(x)`` once per input tensor for all branches (a shared cache)."""

    def __init__(self, model: nn.Module, name: str, cache: dict):
        super().__init__()
        self.model, self.name, self.cache = model, name, cache

    def forward(self, x: torch.Tensor):
        if self.cache.get("input") is not x:
            self.cache.clear()
            self.cache["input"], self.cache["output"] = x, self.model(x)
        return self.cache["output"][self.name]


class MultiEvaluator(Evaluator):
    """One evaluator per task; the state of task ``name`` is kept under ``'name/...'`` so ranks sum it."""

    def __init__(self, evaluators: dict[str, Evaluator]):
        super().__init__()
        self.evaluators = evaluators

    def update(self, pred: Mapping[str, torch.Tensor], batch: dict) -> None:
        for name, ev in self.evaluators.items():
            p = pred[name]
            ev.update(p.float() if isinstance(p, torch.Tensor) else p, batch)

    def reduce(self, all_reduce_sum) -> None:
        for ev in self.evaluators.values():
            ev.reduce(all_reduce_sum)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, ev in self.evaluators.items():
            for k, v in ev.compute().items():
                if k in out:
                    raise ValueError(f"tasks report the same metric {k!r}; give them distinct metrics")
                out[k] = v
        return out


@TASKS.register("multitask")
class MultiTask(Task):
    """Tasks ``tasks={name: task config}`` on the outputs ``output[name]`` of one model.

    Loss: ``{'<name>/<term>': weights[name] * term}`` over every task's loss terms (``weights`` default 1).
    Inference: each task's own (``predict``: a dict ``{name: prediction}``; the model runs once per input).
    Metrics: every task's, in one flat dict (their names must differ, as segmentation's ``mIoU`` and depth's
    ``abs_rel`` do). ``primary_metric`` (default: the first task's) picks ``best.pth``, with the direction of
    the task that reports it (``mIoU`` higher, ``abs_rel`` lower is better). Pictures: every task's panels,
    titled ``'<name>: ...'``. ``class_names`` / ``palette`` (the dataset's metadata) go to the tasks that take
    them.

    Config::

        task = dict(type='multitask', primary_metric='mIoU', weights=dict(seg=1.0, depth=1.0),
                    tasks=dict(seg=dict(type='segmentation', num_classes=40, target_key='label'),
                               depth=dict(type='depth', target_key='depth')))
    """

    def __init__(self, tasks: Mapping[str, dict], weights: Mapping[str, float] | None = None,
                 primary_metric: str | None = None, class_names=None, palette=None):
        if not tasks:
            raise ValueError("multitask needs tasks=dict(name=dict(type=...), ...)")
        meta = {k: v for k, v in (("class_names", class_names), ("palette", palette)) if v is not None}
        self.tasks: dict[str, Task] = {name: TASKS.build(copy.deepcopy(dict(cfg)), where=f"task.tasks.{name}", **meta)
                                       for name, cfg in tasks.items()}
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise ValueError(f"multitask weights name unknown tasks {unknown}; the tasks are {list(self.tasks)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.tasks}
        self.metrics = tuple(m for t in self.tasks.values() for m in t.metrics)
        first = next(iter(self.tasks.values()))
        self.primary_metric = primary_metric or first.primary_metric
        owners = [t for t in self.tasks.values() if self.primary_metric in (*t.metrics, t.primary_metric)]
        if not owners:
            raise ValueError(f"multitask primary_metric {self.primary_metric!r} is no task's metric; choose one of "
                             f"{sorted(set(self.metrics))}")
        self.higher_is_better = owners[0].higher_is_better
        self.class_names = getattr(first, "class_names", None)

    def _outputs(self, output: Any) -> dict:
        if not isinstance(output, dict) or not all(name in output for name in self.tasks):
            got = sorted(output) if isinstance(output, dict) else type(output).__name__
            raise ValueError(f"the multitask task needs a model returning a dict with {list(self.tasks)}; got {got} "
                             f"(use e.g. model=dict(type='multitask_model', ...))")
        return output

    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        output = self._outputs(output)
        losses = {}
        for name, task in self.tasks.items():
            for k, v in task.loss(output[name], batch).items():
                losses[f"{name}/{k}"] = self.weights[name] * v
        return losses

    @torch.no_grad()
    def predict(self, model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
        cache: dict = {}
        return {name: task.predict(_Branch(model, name, cache), image) for name, task in self.tasks.items()}

    def evaluator(self) -> MultiEvaluator:
        return MultiEvaluator({name: t.evaluator() for name, t in self.tasks.items()})

    # -- deployment ---------------------------------------------------------------------------------------
    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    def deploy_output(self, output, image: torch.Tensor) -> tuple:
        """Every task's deployed output of its branch, in task order (named by the task names)."""
        output = self._outputs(output)
        return tuple(task.deploy_output(output[name], image) for name, task in self.tasks.items())

    def result_maps(self, prediction) -> list[tuple[str, np.ndarray]]:
        maps = []
        for name, task in self.tasks.items():
            try:
                maps += task.result_maps(prediction[name])
            except NotImplementedError:
                continue
        if not maps:
            raise NotImplementedError("none of the multitask's tasks writes benchmark-format predictions")
        return maps

    def draw_overlay(self, image: np.ndarray, prediction) -> np.ndarray:
        for name, task in self.tasks.items():
            try:
                return task.draw_overlay(image, prediction[name])
            except NotImplementedError:
                continue
        raise NotImplementedError("none of the multitask's tasks draws overlays (segmentation tasks do)")

    def panels(self, sample: dict, predictions: Mapping[str, Mapping[str, torch.Tensor]]) -> list[tuple[str, np.ndarray]]:
        out = []
        for name, task in self.tasks.items():
            for title, pic in task.panels(sample, {t: p[name] for t, p in predictions.items()}):
                out.append((f"{name}: {title}", pic))
        return out

    def legend(self) -> np.ndarray | None:
        for task in self.tasks.values():
            key = task.legend()
            if key is not None:
                return key
        return None

    def metric_report(self, metrics: Mapping[str, float]) -> str:
        parts = [t.metric_report(metrics) for t in self.tasks.values()]
        return "\n".join(p for p in parts if p)
