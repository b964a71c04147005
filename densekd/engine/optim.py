"""Optimisers (SGD, AdamW, Adam) with optional no-decay groups, and learning-rate schedules.

The schedule is a pure function of the iteration, so resuming needs no
scheduler state: ``lr(it) = base_lr * warmup(it) * decay(it)``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from densekd.registry import did_you_mean

OPTIMIZERS = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam}
SCHEDULES = ("multistep", "poly", "cosine", "constant")


def param_groups(modules: Iterable[nn.Module], weight_decay: float, no_decay_norm_bias: bool,
                 exclude: set[int] = frozenset()) -> list[dict]:
    """Parameter groups; with ``no_decay_norm_bias`` norm weights and biases get no weight decay."""
    decay, no_decay, seen = [], [], set(exclude)
    for module in modules:
        for mod in module.modules():
            is_norm = isinstance(mod, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
            for name, p in mod.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                (no_decay if no_decay_norm_bias and (is_norm or name == "bias" or p.ndim <= 1) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: dict, modules: Iterable[nn.Module], exclude: set[int] = frozenset()) -> torch.optim.Optimizer:
    """``cfg``: ``dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, no_decay_norm_bias=False, ...)``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "SGD")
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer.type {kind!r} is not supported.{did_you_mean(kind, OPTIMIZERS)} "
                         f"Choose one of {', '.join(OPTIMIZERS)}")
    wd = cfg.pop("weight_decay", 0.0)
    no_decay = cfg.pop("no_decay_norm_bias", False)
    groups = param_groups(modules, wd, no_decay, exclude)
    if not groups:
        raise ValueError("the optimizer got no trainable parameters")
    return OPTIMIZERS[kind](groups, **cfg)


class LRSchedule:
    """Per-iteration learning-rate factor.

    Args:
        type: ``'multistep'`` (x ``gamma`` at each milestone), ``'poly'`` ((1 - t/T)^power),
            ``'cosine'`` (to ``min_lr_ratio``), ``'constant'``.
        milestones: for multistep, in epochs when ``by_epoch`` else iterations.
        by_epoch: decay changes only at epoch boundaries (RepDistiller style) instead of every iteration.
        warmup_iters: linear warm-up from ``warmup_ratio`` to 1 over this many iterations.
    """

    def __init__(self, total_iters: int, iters_per_epoch: int, type: str = "multistep", milestones=(),
                 gamma: float = 0.1, power: float = 0.9, min_lr_ratio: float = 0.0, by_epoch: bool = True,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001):
        if type not in SCHEDULES:
            raise ValueError(f"lr_schedule.type {type!r} is unknown.{did_you_mean(type, SCHEDULES)} "
                             f"Choose one of {', '.join(SCHEDULES)}")
        self.total, self.ipe, self.type = max(total_iters, 1), max(iters_per_epoch, 1), type
        self.milestones, self.gamma, self.power = sorted(milestones), gamma, power
        self.min_lr_ratio, self.by_epoch = min_lr_ratio, by_epoch
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio

    def factor(self, it: int) -> float:
        if self.by_epoch:
            pos, end = it // self.ipe, max(self.total // self.ipe, 1)
        else:
            pos, end = it, self.total
        if self.type == "multistep":
            f = self.gamma ** sum(1 for m in self.milestones if pos >= m)
        elif self.type == "poly":
            f = (1 - min(pos, end) / end) ** self.power
        elif self.type == "cosine":
            f = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(pos, end) / end))
        else:
            f = 1.0
        if it < self.warmup_iters:
            f *= self.warmup_ratio + (1 - self.warmup_ratio) * it / self.warmup_iters
        return f


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> float:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    return optimizer.param_groups[0]["lr"]
