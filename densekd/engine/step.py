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
        step.optimizer_step(optimizer)        # checks the gradients, unscale, clip, step, update, zero_grad

Non-finite values never reach the weights: :meth:`Step.check_finite` checks the losses before the backward
pass and :meth:`Step.optimizer_step` (and :meth:`Step.finite_grads` for optimisers a strategy steps by hand,
such as critics) checks the gradients before the optimiser step. Without ``train.skip_nonfinite`` either
stops the run (:class:`NonFiniteLossError`); with it the whole step is skipped (an accumulation window with
one bad micro-batch included), counted (:class:`NonFiniteGuard`: ``skipped_steps`` in ``summary.json``), and
``train.max_consecutive_skips`` skips in a row stop the run. Under fp16 AMP the GradScaler already skips
steps with overflowing gradients (and lowers its scale); those are not counted.

Each of these checks reads a value back from the device, which on a GPU waits for the queued work: a
host-device synchronisation per step. ``train.check_finite='interval'`` (the default on CUDA without
``skip_nonfinite``) defers them: every step only folds, on the device, the iteration of the first non-finite
loss and of the first non-finite gradient into two flags (:meth:`NonFiniteGuard.defer`); the trainer waits for
them once per log interval and before every checkpoint and evaluation (:meth:`NonFiniteGuard.flush`), and stops
the run there, naming the first bad iteration. Non-finite values can then reach the weights for up to a log
interval, but never a checkpoint: once a flush has failed, every later one fails too, so the last checkpoint
stays the last good one. Single steps cannot be skipped that way, so ``skip_nonfinite`` needs
``check_finite='step'`` (checks before every backward pass and optimiser step, the default on the CPU, where
they cost nothing).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from densekd.engine import distributed as dist

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MAX_CONSECUTIVE_SKIPS = 100
CHECK_FINITE = ("auto", "step", "interval")


def check_finite_mode(mode: str, on_cuda: bool, skip_nonfinite: bool) -> str:
    """``train.check_finite`` resolved: ``'step'`` or ``'interval'`` (see the module docstring)."""
    if mode not in CHECK_FINITE:
        raise ValueError(f"train.check_finite must be one of {', '.join(map(repr, CHECK_FINITE))}; got {mode!r}")
    if mode == "interval" and skip_nonfinite:
        raise ValueError("train.check_finite='interval' checks losses and gradients once per log interval, so it "
                         "cannot skip single steps: use train.check_finite='step' with train.skip_nonfinite=True")
    if mode == "auto":
        return "interval" if on_cuda and not skip_nonfinite else "step"
    return mode


def amp_autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` in the ``train.amp`` dtype (``'bf16'`` / ``'fp16'``), or a no-op without AMP."""
    if amp:
        return torch.autocast(device.type, dtype=AMP_DTYPES[amp])
    return contextlib.nullcontext()


class NonFiniteLossError(FloatingPointError):
    pass


class NonFiniteGuard:
    """The run's record of skipped steps (``train.skip_nonfinite``), checkpointed with the run.

    A *stream* is a sequence of optimiser steps: ``'main'`` (the strategy's step of each main-schedule
    iteration), a phase name such as ``'init'``, or ``'critic/<term>/<i>'``. ``by_stream`` counts the skipped
    steps of each; ``consecutive`` the skips in a row, which stop the run at ``max_consecutive``.
    """

    def __init__(self, skip: bool = False, max_consecutive: int = MAX_CONSECUTIVE_SKIPS, deferred: bool = False):
        self.skip = bool(skip)
        self.deferred = bool(deferred)  # train.check_finite='interval'
        self._first_bad: torch.Tensor | None = None  # [first bad loss iteration, first bad gradient iteration]
        self._failed: str | None = None
        self.max_consecutive = int(max_consecutive)
        if self.max_consecutive < 1:
            raise ValueError(f"train.max_consecutive_skips must be >= 1; got {max_consecutive}")
        self.by_stream: dict[str, int] = {}
        self.consecutive: dict[str, int] = {}
        self.last_reason = ""
        self.window_bad: str | None = None  # why the current accumulation window's step is skipped

    @property
    def skipped(self) -> int:
        return sum(self.by_stream.values())

    def mark_window(self, reason: str) -> None:
        if self.window_bad is None:
            self.window_bad = reason

    def skipped_step(self, stream: str, reason: str) -> None:
        self.by_stream[stream] = self.by_stream.get(stream, 0) + 1
        self.consecutive[stream] = self.consecutive.get(stream, 0) + 1
        self.last_reason = reason

    def good_step(self, stream: str) -> None:
        self.consecutive[stream] = 0

    def end_iteration(self, stream: str, step_now: bool) -> None:
        """Book the end of an iteration of ``stream``: at the end of an accumulation window, the window's step
        was skipped (a bad loss or gradient in it) or taken."""
        if not step_now:
            return
        if self.window_bad is not None:
            self.skipped_step(stream, self.window_bad)
        else:
            self.good_step(stream)
        self.window_bad = None

    def check_limit(self) -> None:
        for stream, n in self.consecutive.items():
            if n >= self.max_consecutive:
                raise NonFiniteLossError(
                    f"{n} consecutive {stream} steps skipped for non-finite values (last: {self.last_reason}); the "
                    f"run has diverged. Lower the learning rate or the offending term's weight, or enable "
                    f"train.grad_clip, then start again (train.max_consecutive_skips={self.max_consecutive})")

    # -- deferred checks (train.check_finite='interval') ------------------------------------------------
    def defer(self, bad: torch.Tensor, kind: int, iteration: int) -> None:
        """Fold ``bad`` (a 0-d bool tensor, still on the device) into the first bad iteration of ``kind``
        (0: losses, 1: gradients) without reading it back."""
        if self._first_bad is None or self._first_bad.device != bad.device:
            self._first_bad = torch.full((2,), -1, dtype=torch.long, device=bad.device)
        slot = self._first_bad[kind]
        slot.copy_(torch.where(slot.lt(0) & bad, torch.full_like(slot, iteration), slot))

    def flush(self, world: int = 1) -> None:
        """Wait for the deferred checks; raise :class:`NonFiniteLossError` naming the first bad iteration if
        one failed, on every process (one all-reduce under torchrun). A failed flush fails again every time,
        so that no checkpoint is written from weights that may hold non-finite values."""
        if self._failed is not None:
            raise NonFiniteLossError(self._failed)
        if self._first_bad is None:
            return
        flags = self._first_bad
        bad = flags.ge(0).float()
        if world > 1:
            bad = dist.all_reduce_sum(bad)
        bad, first = bad.cpu(), flags.cpu()
        if not bool(bad.any()):
            return
        parts = [f"{what} first at iteration {int(it) + 1}" if it >= 0 else f"{what} on another process"
                 for what, it, b in zip(("non-finite loss", "non-finite gradients"), first, bad) if b > 0]
        self._failed = (f"{'; '.join(parts)} (train.check_finite='interval' checks once per log interval, so the "
                        f"weights may hold non-finite values; the last checkpoint is the last good one). Lower the "
                        f"learning rate or the term's weight, enable train.grad_clip, or set "
                        f"train.check_finite='step' with train.skip_nonfinite=True to skip such steps")
        raise NonFiniteLossError(self._failed)

    def state_dict(self) -> dict:
        return {"by_stream": dict(self.by_stream), "consecutive": dict(self.consecutive),
                "last_reason": self.last_reason}

    def load_state_dict(self, state: dict) -> None:
        self.by_stream = dict(state.get("by_stream", {}))
        self.consecutive = dict(state.get("consecutive", {}))
        self.last_reason = state.get("last_reason", "")

    def summary(self) -> dict:
        return {"skipped_steps": self.skipped, "skipped_steps_by": dict(self.by_stream)}


def grad_peaks(params: Iterable[nn.Parameter]) -> torch.Tensor | None:
    """The max-abs of every gradient of ``params`` (one fused kernel where available), or None without any."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return None
    try:
        return torch.stack([t.float() for t in torch._foreach_norm(grads, float("inf"))])
    except (AttributeError, RuntimeError, TypeError):  # no fused max-abs for these tensors
        return torch.stack([g.abs().amax().float() for g in grads])


def grads_finite(params: Iterable[nn.Parameter]) -> tuple[bool, int, int]:
    """``(all finite, non-finite count, count)`` over the gradients of ``params`` (one max-abs per tensor)."""
    peaks = grad_peaks(params)
    if peaks is None:
        return True, 0, 0
    n_bad = int((~torch.isfinite(peaks)).sum())
    return n_bad == 0, n_bad, len(peaks)


@dataclass
class Step:
    """One training iteration's context.

    Attributes: ``phase`` (``'main'`` or a strategy's earlier phase such as ``'init'``), ``iter`` (iterations
    of this phase done before this one), ``epoch`` (fractional epoch of the phase), ``step_now`` (the
    optimisers step after this iteration: the end of an accumulation window), ``model`` (the strategy's
    module, DDP-wrapped under torchrun), ``world`` (processes), ``guard`` (the run's skipped-step record).
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
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard)
    optimizer_names: dict[int, str] = field(default_factory=dict)

    # -- mechanics ------------------------------------------------------------------------------------
    def autocast(self):
        return amp_autocast(self.device, self.amp)

    def accumulating(self):
        """DDP's ``no_sync()`` inside an accumulation window (gradients are reduced at its last iteration)."""
        if isinstance(self.model, DistributedDataParallel) and not self.step_now:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _agree(self, ok: bool) -> bool:
        """``ok`` on every process (one all-reduce under torchrun, so that all skip or raise together)."""
        if self.world > 1:
            flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
            return float(dist.all_reduce_sum(flag).item()) == 0.0
        return ok

    def check_finite(self, losses: dict[str, torch.Tensor], where: str) -> bool:
        """True if every loss is finite (on every process); else raise :class:`NonFiniteLossError` naming the
        terms, or (with ``train.skip_nonfinite``) warn and return False so the strategy skips the step (the
        whole accumulation window's optimiser step is then skipped too)."""
        values = torch.stack([v.detach().float().reshape(()) if v.numel() == 1 else v.detach().float().sum()
                              for v in losses.values()])
        if self.guard.deferred:
            self.guard.defer(~torch.isfinite(values).all(), 0, self.iter)
            return True
        local = bool(torch.isfinite(values).all())
        if self._agree(local):
            return True
        bad = [f"{k}={v.detach().float().sum().item()}" for k, v in losses.items()
               if not torch.isfinite(v.detach()).all()] or ["on another process"]
        msg = f"Non-finite loss at {where}: {', '.join(bad)}."
        if self.skip_nonfinite:
            self.warn(msg + " Skipping this step (train.skip_nonfinite=True).")
            self.guard.mark_window(msg.rstrip("."))
            return False
        raise NonFiniteLossError(msg + " Lower the learning rate or the term's weight, enable train.grad_clip, "
                                       "or set train.skip_nonfinite=True to skip such steps.")

    def finite_grads(self, params: Iterable[nn.Parameter], what: str, stream: str | None = None) -> bool:
        """True if the gradients of ``params`` are finite. Otherwise raise :class:`NonFiniteLossError`, or (with
        ``train.skip_nonfinite``) warn and return False: the caller skips its optimiser step. ``stream`` names a
        step sequence of its own (e.g. a critic's: counted at once); by default the iteration's step is booked
        as skipped at the end of the iteration. With deferred checks (``train.check_finite='interval'``) this
        only records the result on the device and returns True."""
        if self.guard.deferred:
            peaks = grad_peaks(params)
            if peaks is not None:
                self.guard.defer(~torch.isfinite(peaks).all(), 1, self.iter)
            return True
        ok, n_bad, n = grads_finite(params)
        if ok:
            if stream is not None:
                self.guard.good_step(stream)
            return True
        msg = (f"Non-finite gradients of {what} at {self.phase} iteration {self.iter + 1} "
               f"({n_bad} of {n} parameter tensors)")
        if not self.skip_nonfinite:
            raise NonFiniteLossError(msg + ". Lower the learning rate or the term's weight, enable train.grad_clip, "
                                           "or set train.skip_nonfinite=True to skip such steps.")
        self.warn(msg + ". Skipping this step (train.skip_nonfinite=True).")
        if stream is None:
            self.guard.mark_window(msg)
        else:
            self.guard.skipped_step(stream, msg)
        return False

    def forward_backward(self, batch: dict, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
        """The common body of a step: the wrapped model's losses on ``batch`` under autocast, the finiteness check
        and the backward of their sum, inside the accumulation context. ``None`` (with ``optimizer``'s gradients
        cleared) when a loss is not finite; the caller then skips its optimiser step."""
        with self.accumulating():
            with self.autocast():
                _, losses = self.model(batch)
            if not self.check_finite(losses, f"iteration {self.iter + 1}"):
                optimizer.zero_grad(set_to_none=True)
                return None
            self.backward(sum(losses.values()))
        return losses

    def backward(self, total: torch.Tensor) -> None:
        """``scaler.scale(total / accumulate).backward()``."""
        self.scaler.scale(total / self.accumulate).backward()

    def clip(self, params: Iterable[nn.Parameter]) -> None:
        if self.grad_clip:
            nn.utils.clip_grad_norm_(list(params), float(self.grad_clip))

    def _zero(self, optimizers) -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def optimizer_step(self, *optimizers: torch.optim.Optimizer) -> bool:
        """Check the gradients, unscale (when clipping), clip ``train.grad_clip``, ``scaler.step`` each optimiser,
        update the scaler once, zero the gradients. Returns False when the step was skipped (a non-finite loss
        earlier in the accumulation window, or non-finite gradients, with ``train.skip_nonfinite``)."""
        if self.guard.window_bad is not None:
            self._zero(optimizers)
            return False
        params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
        if not self.scaler.is_enabled():  # fp16's GradScaler skips overflowing steps by itself
            names = ", ".join(self.optimizer_names.get(id(o), "optimiser") for o in optimizers)
            if not self.finite_grads(params, f"the {names} parameters"):
                self._zero(optimizers)
                return False
        if self.grad_clip:
            for opt in optimizers:
                self.scaler.unscale_(opt)
            self.clip(params)
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        self._zero(optimizers)
        return True

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
