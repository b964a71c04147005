"""What the trainer lends a strategy for one training step: AMP, accumulation, DDP sync, clipping, finiteness.

A strategy's ``train_step(batch, step)`` decides what is computed and which optimisers step; the
:class:`Step` it receives does the mechanics the same way for every strategy::

    with step.accumulating():                 # DDP no_sync() between accumulation boundaries
        with step.autocast():
            _, losses = step.model(batch)     # the DDP-wrapped strategy module
        if not step.check_finite(losses, f"iteration {step.iter + 1}"):
            return None                       # raised, or skipped with train.skip_nonfinite=True
        step.backward(sum(losses.values()))   # scaled by the GradScaler and 1 / accumulate
    if step.step_now:
        step.optimizer_step(optimizer)        # unscale, clip, step, update, zero_grad
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from densekd.engine import distributed as dist

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(FloatingPointError):
    pass


@dataclass
class Step:
    """One training iteration's context.

    Attributes: ``phase`` (``'main'`` or a strategy's earlier phase such as ``'init'``), ``iter`` (iterations
    of this phase done before this one), ``epoch`` (fractional epoch of the phase), ``step_now`` (the
    optimisers step after this iteration: the end of an accumulation window), ``model`` (the strategy's
    module, DDP-wrapped under torchrun), ``world`` (processes).
    """

    phase: str
    iter: int
    epoch: float
    step_now: bool
    model: nn.Module
    world: int
    accumulate: int
    scaler: torch.amp.GradScaler
    amp: str | None
    device: torch.device
    grad_clip: float | None
    skip_nonfinite: bool
    warn: Callable[[str], None]

    # -- mechanics ------------------------------------------------------------------------------------
    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])
        return contextlib.nullcontext()

    def accumulating(self):
        """DDP's ``no_sync()`` inside an accumulation window (gradients are reduced at its last iteration)."""
        if isinstance(self.model, DistributedDataParallel) and not self.step_now:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def check_finite(self, losses: dict[str, torch.Tensor], where: str) -> bool:
        """True if every loss is finite; else raise :class:`NonFiniteLossError` naming the terms, or (with
        ``train.skip_nonfinite``) warn and return False so the strategy skips the step."""
        values = torch.stack([v.detach().float() for v in losses.values()])
        if bool(torch.isfinite(values).all()):
            return True
        bad = [f"{k}={v.item()}" for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
        msg = f"Non-finite loss at {where}: {', '.join(bad)}."
        if self.skip_nonfinite:
            self.warn(msg + " Skipping this step (train.skip_nonfinite=True).")
            return False
        raise NonFiniteLossError(msg + " Lower the learning rate or the term's weight, enable train.grad_clip, "
                                       "or set train.skip_nonfinite=True to skip such steps.")

    def backward(self, total: torch.Tensor) -> None:
        """``scaler.scale(total / accumulate).backward()``."""
        self.scaler.scale(total / self.accumulate).backward()

    def clip(self, params: Iterable[nn.Parameter]) -> None:
        if self.grad_clip:
            nn.utils.clip_grad_norm_(list(params), float(self.grad_clip))

    def optimizer_step(self, *optimizers: torch.optim.Optimizer) -> None:
        """Unscale (when clipping), clip ``train.grad_clip``, ``scaler.step`` each optimiser, update the
        scaler once, zero the gradients."""
        if self.grad_clip:
            for opt in optimizers:
                self.scaler.unscale_(opt)
            self.clip(p for opt in optimizers for g in opt.param_groups for p in g["params"])
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def average_grads(self, params: Iterable[nn.Parameter]) -> None:
        """All-reduce-mean the gradients of parameters that DDP does not synchronise (own optimisers)."""
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(dist.all_reduce_mean(p.grad))


def loss_entries(losses: dict[str, torch.Tensor]) -> dict[str, Any]:
    out = {f"loss/{k}": v.detach() for k, v in losses.items()}
    out["loss"] = sum(v.detach() for v in losses.values())
    return out
