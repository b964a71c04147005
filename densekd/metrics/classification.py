"""Top-k accuracy."""
from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the ``k`` highest scores, for each ``k``.

    ``logits``: B x C, ``target``: B (class ids). ``k`` larger than C counts every sample.
    """
    if logits.dim() != 2 or target.dim() != 1 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"topk_correct expects logits BxC and target B; got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # B x kmax
    hit = top.eq(target.unsqueeze(1))
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]
