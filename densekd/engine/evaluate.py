"""Evaluation: one loop for the trainer and ``tools/test.py``."""
from __future__ import annotations

import contextlib

import torch

from densekd.config import Config
from densekd.engine import distributed as dist
from densekd.engine.builder import build_dataset, build_model, build_task, build_val_loader, strategy_class, strategy_config
from densekd.engine.checkpoint import CheckpointError, load_checkpoint, load_state, model_state_from
from densekd.tasks.base import batch_input


class EvaluationInterrupted(Exception):
    """A stop signal arrived during an evaluation (single process): the trainer saved last.pth before it."""


def to_device(batch: dict, device: torch.device, channels_last: bool = False, step=None) -> dict:
    """The batch's tensors on ``device``; then the dataset's device step (``step``, see
    :func:`densekd.data.sampling.device_step`: e.g. decoding JPEG bytes there); 4-D tensors in channels-last
    layout when asked."""
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if step is not None:
        out = step(out)
    if channels_last:
        out = {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) and v.dim() == 4
               else v for k, v in out.items()}
    return out


@torch.no_grad()
def run_evaluation(model, task, loader, device: torch.device, autocast=contextlib.nullcontext,
                   channels_last: bool = False, input_key: str = "image", should_stop=None) -> dict[str, float]:
    """Predict every batch of ``loader`` from ``batch[input_key]``, sum the evaluator state over ranks,
    compute the metrics. ``should_stop()``, checked before each batch, interrupts the evaluation
    (:class:`EvaluationInterrupted`)."""
    from densekd.data.sampling import device_step

    was_training = model.training
    model.eval()
    evaluator = task.evaluator()
    step = device_step(loader.dataset)
    for batch in loader:
        if should_stop is not None and should_stop():
            model.train(was_training)
            raise EvaluationInterrupted()
        batch = to_device(batch, device, channels_last, step)
        with autocast():
            pred = task.predict(model, batch_input(batch, input_key, "the evaluated model"))
        evaluator.update(pred.float() if isinstance(pred, torch.Tensor) else pred, batch)
    evaluator.reduce(lambda t: dist.all_reduce_sum(t.to(device)).cpu())
    model.train(was_training)
    return evaluator.compute()


def checkpoint_models(cfg: Config, ckpt: dict, source: str = "the checkpoint") -> dict[str, torch.nn.Module]:
    """The evaluated models of a run (the strategy's ``eval_models``), built from the config and loaded from a
    densekd checkpoint (``models`` by name when the run evaluates several, else ``model``) or a plain state
    dict (primary model only)."""
    strategy = strategy_config(cfg)
    strategy.pop("type")
    configs = strategy_class(cfg).eval_model_configs(cfg, **strategy)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {source} holds a {type(ckpt).__name__}, not a densekd checkpoint or a "
                              f"state dict (parameter name -> tensor)")
    states = ckpt.get("models") if isinstance(ckpt.get("models"), dict) else {next(iter(configs)): model_state_from(ckpt)}
    models = {}
    for name, state in states.items():
        if name not in configs:
            raise ValueError(f"checkpoint {source} holds model {name!r} but the config's strategy evaluates "
                             f"{list(configs)}")
        model = build_model(configs[name], where=f"model {name}")
        load_state(model, state, what=f"model {name}", source=source, ckpt=ckpt)
        models[name] = model
    return models


def evaluate_checkpoint(cfg: Config, checkpoint: str, device: str = "auto"):
    """``(metrics, task)`` of a checkpoint on the config's validation set: metrics as a flat dict for one
    model, ``{name: metrics}`` when the run evaluates several (e.g. mutual learning's students). Only the
    validation split is read (its class names are the task's)."""
    dev = dist.setup(device)
    ckpt = load_checkpoint(checkpoint)  # a damaged file fails before the data is read
    val = build_dataset(cfg, "val")
    if val is None:
        raise ValueError("the config has no data.val dataset to evaluate on")
    task = build_task(cfg, val)
    models = checkpoint_models(cfg, ckpt, source=str(checkpoint))
    loader = build_val_loader(cfg, val, rank=dist.rank(), world=dist.world_size())
    key = str(cfg.get("student_input", "image"))
    results = {name: run_evaluation(m.to(dev), task, loader, dev, input_key=key) for name, m in models.items()}
    return (next(iter(results.values())) if len(results) == 1 else results), task
