"""The BNS dataset-similarity measure (Haroush et al., CVPR 2020, "The Knowledge Within"): how well a dataset
matches the BatchNorm statistics a model stores.

For a model with BatchNorm layers ``l = 1..L`` (running mean ``m~_lc`` and variance ``s~_lc^2`` per channel) and a
dataset read in batches ``b`` of ``n_b`` images (in order, without augmentation)::

    KL_l(b) = sum_c KL( N(m^_lc(b), s^_lc(b)^2 + eps_l) || N(m~_lc, s~_lc^2 + eps_l) )
    BNS     = sum_b n_b * (1/L) sum_l KL_l(b)  /  sum_b n_b

``m^_lc(b)``, ``s^_lc(b)^2``: mean and biased variance of layer ``l``'s input over batch ``b`` and all spatial
positions, with the model in eval mode (every layer sees the previous layers normalised by their stored
statistics, as at test time); ``KL`` is :func:`~densekd.synthesis.bn.gaussian_kl`. The score is a mean over
layers of per-layer sums over channels, averaged over batches weighted by their size; **lower = more similar** (0
when every batch reproduces every stored mean and variance). It depends on the batch size (a batch's moments
are noisier estimates for small batches), so compare datasets at one batch size (default 256; the last,
incomplete batch is dropped when there is at least one full batch). ``per_layer`` gives each layer's
batch-averaged ``KL_l``.
"""
from __future__ import annotations

import torch
from torch import nn

from densekd.synthesis.bn import BNInputStats, bn_kl_per_layer


@torch.no_grad()
def bn_similarity(model: nn.Module, batches, device: torch.device | str = "cpu", input_key: str = "image") -> dict:
    """The BNS score of ``batches`` (an iterable of batch dicts or image tensors) for ``model``: ``{'bns': score,
    'per_layer': {layer name: KL}, 'images': N, 'batches': B}``."""
    model.eval()
    with BNInputStats(model) as stats:
        names = [name for name, _ in stats.layers]
        layer_sum = torch.zeros(len(names), dtype=torch.float64)
        score_sum, images, count = 0.0, 0, 0
        for batch in batches:
            x = batch[input_key] if isinstance(batch, dict) else batch
            x = x.to(device)
            stats.clear()
            model(x)
            reached = stats.stats
            if len(reached) != len(names):
                raise ValueError(f"{len(names) - len(reached)} BatchNorm layers of {type(model).__name__} were not "
                                 f"reached by the forward pass; the BNS score averages over every layer")
            kl = torch.stack(bn_kl_per_layer(reached)).double().cpu()
            n = int(x.shape[0])
            layer_sum += n * kl
            score_sum += n * float(kl.mean())
            images += n
            count += 1
    if not images:
        raise ValueError("bn_similarity: no batches")
    return {"bns": score_sum / images, "per_layer": dict(zip(names, (layer_sum / images).tolist())),
            "images": images, "batches": count}
