"""A weighted logit ensemble of several models, evaluated as one model.

``dict(type='logit_ensemble', members=[dict(type='resnet32'), dict(type='wrn_16_2')], weights=None)``:
``forward(x) = sum_i weights[i] * out_i(x)`` over the members' main outputs (the ``out`` entry of a dict
output), with ``weights`` a buffer (default ``1/m`` each: the mean of the logits). Online-distillation cohorts
(KDCL) evaluate their students' ensemble with it, sharing the students' modules and keeping the fitted
weights in the buffer, so that checkpoints hold them and ``tools/test.py`` rebuilds the ensemble from its
config.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from densekd.registry import MODELS
from densekd.tasks.base import main_output


@MODELS.register("logit_ensemble")
class LogitEnsemble(nn.Module):
    """Weighted sum of the members' logits (see the module docstring).

    Args:
        members: model configs (``dict(type=...)``) or modules.
        weights: one weight per member (default ``1/m`` each).
    """

    def __init__(self, members: Sequence[Any], weights: Sequence[float] | None = None):
        super().__init__()
        if not members:
            raise ValueError("logit_ensemble needs members=[dict(type=...), ...]")
        mods = [MODELS.build(dict(m), where=f"logit_ensemble member {i}") if isinstance(m, dict) else m
                for i, m in enumerate(members)]
        self.members = nn.ModuleList(mods)
        m = len(mods)
        w = torch.full((m,), 1.0 / m) if weights is None else torch.as_tensor(list(weights), dtype=torch.float32)
        if w.shape != (m,):
            raise ValueError(f"logit_ensemble: {w.numel()} weights for {m} members")
        self.register_buffer("weights", w.float())

    def set_weights(self, weights: torch.Tensor | Sequence[float]) -> None:
        with torch.no_grad():
            self.weights.copy_(torch.as_tensor(weights, dtype=self.weights.dtype).to(self.weights.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [main_output(m(x)) for m in self.members]
        w = self.weights.to(outs[0].dtype)
        return sum(w[i] * o for i, o in enumerate(outs))
