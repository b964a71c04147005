"""Image priors and augmentations of data-free synthesis (tensors only).

* :func:`total_variation`: the four-neighbour total variation of DeepInversion's release
  (``get_image_prior_losses``): differences to the right, down, and both diagonals of the batch ``x``
  (``B x C x H x W``); ``kind='l2'`` sums the four differences' L2 (Frobenius) norms over the whole batch (the
  release's ``loss_var_l2``, used by its CIFAR-10 script as ``di_var_scale`` and its ImageNet script as
  ``tv_l2``), ``kind='l1'`` sums the four mean absolute differences (``loss_var_l1``, the ImageNet script's
  ``tv_l1``). Computed in the normalised input space, as the release.
* :func:`image_l2`: the mean over images of each image's L2 norm (the ImageNet release's ``loss_l2``; its CIFAR
  script takes one norm of the whole batch, the same up to the batch's shape for the usual weight 0).
* :func:`jitter`: a circular shift (``torch.roll``) by ``(dy, dx)`` pixels and an optional horizontal flip of the
  whole batch, the release's random jitter (offsets drawn uniformly in ``[-j, j]``, ``j = 30`` at 224 px, 2 at
  32 px) and flip.
* :func:`js_divergence`: ``JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M)``, ``M = (P + Q) / 2``, of the softmaxes of
  two logit batches at temperature ``T``, averaged over the batch -- Adaptive DeepInversion's competition
  score. Departure: the release clamps P, Q and M to [0.01, 0.99] and computes ``KL(M || P)`` and ``KL(M || Q)``
  (``KLDivLoss(log P, M)``) instead; here the divergence is the textbook one, bounded by log 2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _diffs(x: torch.Tensor) -> list[torch.Tensor]:
    if x.dim() != 4:
        raise ValueError(f"image priors take B x C x H x W batches; got shape {tuple(x.shape)}")
    return [x[:, :, :, :-1] - x[:, :, :, 1:], x[:, :, :-1, :] - x[:, :, 1:, :],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:], x[:, :, :-1, :-1] - x[:, :, 1:, 1:]]


def total_variation(x: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """DeepInversion's total variation of the batch ``x`` (see the module docstring): ``'l2'`` or ``'l1'``."""
    if kind == "l2":
        return sum(torch.linalg.vector_norm(d) for d in _diffs(x))
    if kind == "l1":
        return sum(d.abs().mean() for d in _diffs(x))
    raise ValueError(f"total variation kind must be 'l1' or 'l2'; got {kind!r}")


def image_l2(x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each image's L2 norm."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()


def jitter(x: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """``x`` rolled by ``dy`` rows and ``dx`` columns (circularly), then flipped left-right when ``flip``."""
    if dy or dx:
        x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip else x


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, T: float = 3.0) -> torch.Tensor:
    """Batch mean of ``JS(softmax(logits_p / T), softmax(logits_q / T))`` (natural log, in [0, log 2])."""
    log_p = F.log_softmax(logits_p.float() / T, dim=1)
    log_q = F.log_softmax(logits_q.float() / T, dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - torch.log(torch.tensor(2.0, device=log_p.device))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(1)
    return (0.5 * kl_pm + 0.5 * kl_qm).mean()
