"""Optimisers (SGD, AdamW, Adam) with optional no-decay groups and per-module learning-rate multipliers, and
learning-rate schedules.

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


GROUP_RULE_KEYS = ("prefix", "lr_mult", "wd_mult")


def check_group_rules(rules) -> list[dict]:
    """``optimizer.param_groups``: a list of ``dict(prefix=..., lr_mult=1.0, wd_mult=1.0)``."""
    if rules is None:
        return []
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"optimizer.param_groups must be a list of dict(prefix='encoder', lr_mult=0.1); got {rules!r}")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ValueError(f"optimizer.param_groups.{i} must be dict(prefix=..., lr_mult=..., wd_mult=...); got "
                             f"{rule!r}")
        for key in rule:
            if key not in GROUP_RULE_KEYS:
                raise ValueError(f"optimizer.param_groups.{i}: unknown key {key!r}.{did_you_mean(key, GROUP_RULE_KEYS)} "
                                 f"Valid keys: {', '.join(GROUP_RULE_KEYS)}")
        prefix = rule.get("prefix")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"optimizer.param_groups.{i} needs prefix='MODULE.PATH' (a module path of the model, "
                             f"e.g. 'encoder' or 'layer1'); got {prefix!r}")
        mults = {}
        for key in ("lr_mult", "wd_mult"):
            v = rule.get(key, 1.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"optimizer.param_groups.{i}.{key} must be a number >= 0; got {v!r}")
            mults[key] = float(v)
        out.append(dict(prefix=prefix, **mults))
    return out


def _rule_of_params(named: nn.Module, rules: list[dict]) -> dict[int, int]:
    """``id(parameter) -> index of its rule``: the rule with the longest prefix that is the parameter's module
    path or an ancestor of it. A prefix matching no parameter of ``named`` is an error with close module paths."""
    from densekd.registry import close_matches

    names = dict(named.named_parameters())
    out: dict[int, int] = {}
    for i, rule in enumerate(rules):
        prefix = rule["prefix"]
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            modules = [m for m, _ in named.named_modules() if m]
            hits = close_matches(prefix, modules, n=4)
            hint = f" Closest module paths: {', '.join(hits)}." if hits else ""
            raise ValueError(f"optimizer.param_groups.{i}: prefix {prefix!r} matches no parameter of "
                             f"{type(named).__name__}.{hint} (python tools/list_taps.py CONFIG lists the module paths)")
    for name, p in names.items():
        best, length = None, -1
        for i, rule in enumerate(rules):
            prefix = rule["prefix"]
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                best, length = i, len(prefix)
        if best is not None:
            out[id(p)] = best
    return out


def param_groups(modules: Iterable[nn.Module], weight_decay: float, no_decay_norm_bias: bool,
                 exclude: set[int] = frozenset(), rules=(), named: nn.Module | None = None,
                 lr: float | None = None) -> list[dict]:
    """Parameter groups; with ``no_decay_norm_bias`` norm weights and biases get no weight decay.

    ``rules`` (``optimizer.param_groups``): parameters of ``named`` (the student) under a rule's ``prefix`` (a
    module path; the longest matching prefix wins) form their own groups with learning rate ``lr * lr_mult``
    and weight decay ``weight_decay * wd_mult``, e.g. a fine-tuned encoder at a tenth of the new head's rate.
    Frozen parameters are in no group. The groups without a rule come first (their rate is the logged ``lr``);
    each group has a ``name``."""
    rules = check_group_rules(rules)
    if rules and named is None:
        raise ValueError("optimizer.param_groups needs the model whose module paths the prefixes name")
    if rules and lr is None:
        raise ValueError("optimizer.param_groups scales optimizer.lr: set optimizer.lr")
    rule_of = _rule_of_params(named, rules) if rules else {}
    buckets: dict[tuple[int, bool], list] = {}
    seen = set(exclude)
    for module in modules:
        for mod in module.modules():
            is_norm = isinstance(mod, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
            for name, p in mod.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                no_decay = no_decay_norm_bias and (is_norm or name == "bias" or p.ndim <= 1)
                buckets.setdefault((rule_of.get(id(p), -1), no_decay), []).append(p)
    groups = []
    for r in [-1] + list(range(len(rules))):
        for no_decay in (False, True):
            params = buckets.get((r, no_decay))
            if not params:
                continue
            rule = rules[r] if r >= 0 else None
            group = {"params": params, "weight_decay": 0.0 if no_decay else
                     weight_decay * (rule["wd_mult"] if rule else 1.0),
                     "name": (rule["prefix"] if rule else "default") + (" (no decay)" if no_decay else "")}
            if rule is not None:
                group["lr"] = lr * rule["lr_mult"]
            groups.append(group)
    return groups


def build_optimizer(cfg: dict, modules: Iterable[nn.Module], exclude: set[int] = frozenset(),
                    named: nn.Module | None = None) -> torch.optim.Optimizer:
    """``cfg``: ``dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, no_decay_norm_bias=False,
    param_groups=[dict(prefix='encoder', lr_mult=0.1)], ...)``; ``named``: the model whose module paths the
    ``param_groups`` prefixes name (the student)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "SGD")
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer.type {kind!r} is not supported.{did_you_mean(kind, OPTIMIZERS)} "
                         f"Choose one of {', '.join(OPTIMIZERS)}")
    wd = cfg.pop("weight_decay", 0.0)
    no_decay = cfg.pop("no_decay_norm_bias", False)
    rules = cfg.pop("param_groups", None)
    groups = param_groups(modules, wd, no_decay, exclude, rules=rules, named=named, lr=cfg.get("lr"))
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
