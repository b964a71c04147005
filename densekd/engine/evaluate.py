"""Evaluation: one loop for the trainer and ``tools/test.py``."""
from __future__ import annotations

import contextlib

import torch

from densekd.config import Config
from densekd.data.sampling import build_loader
from densekd.engine import distributed as dist
from densekd.engine.builder import build_datasets, build_model, build_task
from densekd.engine.checkpoint import load_weights
from densekd.tasks.base import main_output


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


@torch.no_grad()
def run_evaluation(model, task, loader, device: torch.device, autocast=contextlib.nullcontext,
                   channels_last: bool = False) -> dict[str, float]:
    """Predict every batch of ``loader``, sum the evaluator state over ranks, compute the metrics."""
    was_training = model.training
    model.eval()
    evaluator = task.evaluator()
    for batch in loader:
        batch = to_device(batch, device, channels_last)
        with autocast():
            pred = task.predict(model, batch["image"])
        evaluator.update(main_output(pred).float(), batch)
    evaluator.reduce(lambda t: dist.all_reduce_sum(t.to(device)).cpu())
    model.train(was_training)
    return evaluator.compute()


def evaluate_checkpoint(cfg: Config, checkpoint: str, device: str = "auto") -> dict[str, float]:
    dev = dist.setup(device)
    task = build_task(cfg)
    _, val = build_datasets(cfg)
    if val is None:
        raise ValueError("the config has no data.val dataset to evaluate on")
    model = build_model(cfg["model"])
    load_weights(model, checkpoint, what="model")
    model.to(dev)
    data = cfg.get("data", {})
    loader = build_loader(val, int(data.get("val_batch_size", data.get("batch_size", 64))), shuffle=False,
                          seed=0, train=False, rank=dist.rank(), world_size=dist.world_size())
    return run_evaluation(model, task, loader, dev)


def per_class_table(metrics: dict[str, float], prefix: str = "IoU/") -> str:
    """Markdown table of the per-class entries (``IoU/road``...), or '' when there are none."""
    rows = [(k[len(prefix):], v) for k, v in metrics.items() if k.startswith(prefix)]
    if not rows:
        return ""
    lines = [f"| class | {prefix.rstrip('/')} (%) |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in rows]
    return "\n".join(lines) + "\n"
