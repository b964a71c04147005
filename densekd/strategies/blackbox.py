"""A teacher seen as a black box: images in, class probabilities out, every query counted against a budget.

Strategies that may only *query* a teacher (active mixup) receive a :class:`BlackBoxTeacher` from
:func:`build_blackbox_teacher` and never the network: the wrapper holds the model in a closure, has no
attribute that leads to it, and answers any other attribute (``model``, ``parameters``, ``features``, ``to``,
...) with an ``AttributeError`` saying what the interface is. ``query(images)`` runs the model in eval mode
under ``torch.no_grad`` and returns ``softmax`` probabilities (``B x C``, float32, no autograd graph, on the
images' device); the parameters therefore never receive a gradient. The count is of images, as a paid API
would count them; a query that would take the count past ``budget`` raises :class:`QueryBudgetExceeded`
before anything is sent. (Python cannot truly seal an object; this is an interface contract, checked by the
tests, not a security boundary.)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["BlackBoxTeacher", "QueryBudgetExceeded", "build_blackbox_teacher"]


class QueryBudgetExceeded(RuntimeError):
    """A query would take the teacher's query count past its budget."""


class BlackBoxTeacher:
    """``query(images) -> probabilities``; ``queries`` (images queried so far) and ``budget`` (None: unlimited)."""

    __slots__ = ("_run", "_queries", "_budget")

    def __init__(self, model: nn.Module, budget: int | None = None, batch_size: int = 256):
        model.eval()
        chunk = max(int(batch_size), 1)

        @torch.no_grad()
        def run(images: torch.Tensor) -> torch.Tensor:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = images.device
            if device != images.device:
                model.to(images.device)
            model.eval()
            outs = []
            for start in range(0, images.shape[0], chunk):
                logits = model(images[start:start + chunk])
                logits = logits["out"] if isinstance(logits, dict) and "out" in logits else logits
                outs.append(logits.float().softmax(dim=1))
            return torch.cat(outs) if outs else images.new_zeros((0, 0))

        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_queries", 0)
        object.__setattr__(self, "_budget", None if budget is None else int(budget))

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of ``images`` (``B x ...`` -> ``B x C``), counted: ``B`` queries."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"BlackBoxTeacher.query takes a batch tensor of images; got {type(images).__name__}")
        n = int(images.shape[0])
        if self._budget is not None and self._queries + n > self._budget:
            raise QueryBudgetExceeded(f"querying {n} images would bring the teacher's query count to "
                                      f"{self._queries + n}, past its budget of {self._budget}")
        probs = self._run(images.detach())
        object.__setattr__(self, "_queries", self._queries + n)
        return probs

    @property
    def queries(self) -> int:
        return self._queries

    @queries.setter
    def queries(self, value: int) -> None:
        """A resumed run restores the count of its earlier sessions; the count never goes down."""
        value = int(value)
        if value < self._queries:
            raise ValueError(f"the query count only grows: {self._queries} -> {value} refused")
        if self._budget is not None and value > self._budget:
            raise QueryBudgetExceeded(f"a query count of {value} is past the budget of {self._budget}")
        object.__setattr__(self, "_queries", value)

    @property
    def budget(self) -> int | None:
        return self._budget

    def __getattr__(self, name: str):
        raise AttributeError(f"BlackBoxTeacher has no attribute {name!r}: a black-box teacher answers only "
                             f"query(images) -> class probabilities (and reports .queries / .budget); its "
                             f"parameters, features and gradients are not accessible")

    def __setattr__(self, name: str, value) -> None:
        if name == "queries":
            type(self).queries.fset(self, value)
            return
        raise AttributeError(f"BlackBoxTeacher is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"BlackBoxTeacher(queries={self._queries}, budget={self._budget})"


def build_blackbox_teacher(cfg, synthetic: bool, warn: Callable[[str], None], calibration_batches=None,
                           budget: int | None = None, batch_size: int = 256) -> BlackBoxTeacher:
    """The config's one teacher (``teacher = dict(model=..., checkpoint=...)``) behind a :class:`BlackBoxTeacher`.
    The network is built, loaded (or, with ``--synthetic`` and no checkpoint, randomly initialised with its
    BatchNorm statistics calibrated on ``calibration_batches``) and wrapped here; only the wrapper leaves."""
    from densekd.config import ConfigError
    from densekd.engine.builder import build_teachers, calibrate_batchnorm

    teachers, inputs, untrained = build_teachers(cfg, synthetic, warn=warn)
    if len(teachers) != 1:
        raise ConfigError(f"a black-box teacher is one network; the config defines {len(teachers)} (set "
                          f"`teacher = dict(model=..., checkpoint=...)`)")
    model = teachers[0]
    for p in model.parameters():
        p.requires_grad_(False)
    if untrained[0] and calibration_batches is not None:
        calibrate_batchnorm(model, calibration_batches(), inputs[0])
    return BlackBoxTeacher(model, budget=budget, batch_size=batch_size)
