"""Batch-norm statistics of a frozen network's inputs, and the two losses built on them.

Every ``nn.BatchNorm{1,2,3}d`` of a network stores the running mean ``m~`` and variance ``s~^2`` of its input
over the data it was trained on. :class:`BNInputStats` records, on each forward pass, the batch mean ``m^`` and
biased batch variance ``s^^2`` of every BatchNorm's *input* per channel (over the batch and all spatial positions,
as BatchNorm normalises in training), so that images can be optimised to reproduce the stored statistics:

* :func:`bn_moment_loss` -- DeepInversion's feature regulariser (Yin et al., CVPR 2020, eq. 4 / ``R_feature``):
  ``sum_l a_l (||m^_l - m~_l||_2 + ||s^^2_l - s~^2_l||_2)``, ``a_1 = first_bn_multiplier`` and ``a_l = 1`` for the
  other layers (the release's ``first_bn_multiplier``; 10 in its ImageNet script, absent -- i.e. 1 -- in its CIFAR
  one). Plain L2 norms of the differences (not squared), as the release's ``torch.norm``; variances without eps.
* :func:`bn_kl_loss` -- The Knowledge Within's BN-statistics objective (Haroush, Hubara, Hoffer & Soudry, CVPR
  2020): ``sum_l sum_c KL(N(m^, s^^2) || N(m~, s~^2))`` with :func:`gaussian_kl`, the batch's Gaussian against the
  stored one; :func:`bn_kl_per_layer` gives the per-layer sums over channels (the BNS similarity measure averages
  them, :mod:`densekd.synthesis.similarity`). Both variances get the layer's ``eps`` (what BatchNorm divides by),
  so a constant channel (s^ = 0) gives a finite value.

Layers are in ``model.modules()`` order (the first is the first BatchNorm the input meets in the usual nets). A
BatchNorm that a forward pass did not reach is left out of that pass's losses.
"""
from __future__ import annotations

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BN]]:
    """``(name, module)`` of every BatchNorm of ``model`` that keeps running statistics, in ``modules()`` order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _BN) and m.track_running_stats
            and m.running_mean is not None]


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``x`` (``N x C`` or ``N x C x ...``) over every dimension but the
    channel dimension 1 -- the statistics BatchNorm normalises with in training."""
    if x.dim() < 2:
        raise ValueError(f"a BatchNorm input must be N x C (x ...); got shape {tuple(x.shape)}")
    dims = [0] + list(range(2, x.dim()))
    x = x.float()
    mean = x.mean(dim=dims)
    var = (x - mean.view(1, -1, *([1] * (x.dim() - 2)))).pow(2).mean(dim=dims)
    return mean, var


class BNInputStats:
    """Forward hooks on every BatchNorm of ``model`` recording its input's batch moments (with gradients).

    ``stats`` after a forward pass: one ``(name, module, mean, var)`` per BatchNorm reached, in
    ``modules()`` order. Use as a context manager (hooks removed on exit) or call :meth:`remove`.
    """

    def __init__(self, model: nn.Module):
        self.layers = batchnorm_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no BatchNorm layer with running statistics: the BN-statistics "
                             f"losses and the BNS similarity need a network with BatchNorm")
        self._order = {id(m): i for i, (_, m) in enumerate(self.layers)}
        self._seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles = [m.register_forward_hook(self._hook) for _, m in self.layers]

    def _hook(self, module: nn.Module, inputs, _output) -> None:
        self._seen[id(module)] = batch_moments(inputs[0])

    def clear(self) -> None:
        self._seen = {}

    @property
    def stats(self) -> list[tuple[str, _BN, torch.Tensor, torch.Tensor]]:
        out = []
        for name, m in self.layers:
            if id(m) in self._seen:
                mean, var = self._seen[id(m)]
                out.append((name, m, mean, var))
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "BNInputStats":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def bn_moment_loss(stats, first_bn_multiplier: float = 1.0) -> torch.Tensor:
    """DeepInversion's ``R_feature``: ``sum_l a_l (||m^_l - m~_l||_2 + ||s^^2_l - s~^2_l||_2)`` over the recorded
    layers (``a_1 = first_bn_multiplier``, else 1); ``stats`` as :attr:`BNInputStats.stats`."""
    total = None
    for i, (_, m, mean, var) in enumerate(stats):
        term = torch.linalg.vector_norm(m.running_var.float() - var) + \
            torch.linalg.vector_norm(m.running_mean.float() - mean)
        term = term * (float(first_bn_multiplier) if i == 0 else 1.0)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no BatchNorm layer was reached by the forward pass")
    return total


def gaussian_kl(mean_p: torch.Tensor, var_p: torch.Tensor, mean_q: torch.Tensor, var_q: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(mean_p, var_p) || N(mean_q, var_q))`` of univariate Gaussians:
    ``log(s_q / s_p) - 1/2 (1 - (s_p^2 + (m_p - m_q)^2) / s_q^2)`` (variances, not standard deviations, as inputs)."""
    return 0.5 * (torch.log(var_q) - torch.log(var_p)) - 0.5 * (1.0 - (var_p + (mean_p - mean_q) ** 2) / var_q)


def bn_kl_per_layer(stats) -> list[torch.Tensor]:
    """Per recorded layer, ``sum_c KL(N(m^_c, s^^2_c + eps) || N(m~_c, s~^2_c + eps))`` (batch vs stored)."""
    out = []
    for _, m, mean, var in stats:
        eps = float(m.eps)
        out.append(gaussian_kl(mean, var + eps, m.running_mean.float(), m.running_var.float() + eps).sum())
    if not out:
        raise ValueError("no BatchNorm layer was reached by the forward pass")
    return out


def bn_kl_loss(stats) -> torch.Tensor:
    """The Knowledge Within's BNS objective: :func:`bn_kl_per_layer` summed over layers."""
    return torch.stack(bn_kl_per_layer(stats)).sum()
