"""Monocular depth metrics under the standard NYU-Depth v2 evaluation.

Per image: ground truth is valid where ``min_depth < gt <= max_depth`` (default ``(1e-3, 10]`` m) and, with
the Eigen crop, inside rows 45:471 and columns 41:601 of the 480 x 640 frame (Eigen et al., NIPS 2014; the
crop of BTS / AdaBins' evaluation); predictions are clamped to ``[min_depth, max_depth]``; no median scaling
(supervised models predict metric depth). With ``d = log(pred) - log(gt)`` over the valid pixels::

    abs_rel  = mean(|pred - gt| / gt)            sq_rel = mean((pred - gt)^2 / gt)
    rmse     = sqrt(mean((pred - gt)^2))         rmse_log = sqrt(mean(d^2))
    log10    = mean(|log10(pred) - log10(gt)|)   silog = 100 * sqrt(mean(d^2) - mean(d)^2)
    delta_k  = mean(max(pred / gt, gt / pred) < 1.25^k),  k = 1, 2, 3   (fractions, not percent)

Each metric is computed per image and then averaged over images (as BTS / AdaBins do); an image without a
valid pixel is left out and counted in ``images_without_valid_depth``. Frames of another size get the crop
scaled to their size (rows ``round(45 h / 480)`` ... ``round(471 h / 480)``, likewise for columns).
"""
from __future__ import annotations

import torch

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "silog")
EIGEN_CROP = (45, 471, 41, 601)  # rows, cols of the 480 x 640 frame
NYU_FRAME = (480, 640)


def eigen_crop_mask(height: int, width: int, device=None) -> torch.Tensor:
    """Boolean ``height x width`` mask of the Eigen crop, scaled from the 480 x 640 frame."""
    r0, r1, c0, c1 = EIGEN_CROP
    fh, fw = height / NYU_FRAME[0], width / NYU_FRAME[1]
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[round(r0 * fh):round(r1 * fh), round(c0 * fw):round(c1 * fw)] = True
    return mask


def valid_depth_mask(gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0,
                     crop: str | None = "eigen") -> torch.Tensor:
    """Valid ground-truth pixels of ``gt`` (``... x H x W``): inside ``(min_depth, max_depth]`` and the crop."""
    if crop not in (None, "eigen"):
        raise ValueError(f"crop must be 'eigen' or None; got {crop!r}")
    mask = (gt > min_depth) & (gt <= max_depth)
    if crop == "eigen":
        mask = mask & eigen_crop_mask(gt.shape[-2], gt.shape[-1], gt.device)
    return mask


def image_depth_metrics(pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0,
                        crop: str | None = "eigen") -> torch.Tensor:
    """Per-image metrics: ``B x len(DEPTH_METRICS)`` (float64, NaN rows for images without a valid pixel).

    ``pred`` and ``gt``: ``B x H x W`` or ``B x 1 x H x W`` depth in metres, same size.
    """
    if pred.dim() == 4:
        pred = pred[:, 0]
    if gt.dim() == 4:
        gt = gt[:, 0]
    if pred.shape != gt.shape:
        raise ValueError(f"depth prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size; "
                         f"resize the prediction to the ground truth first")
    pred = pred.double().clamp(min_depth, max_depth)
    gt = gt.double()
    mask = valid_depth_mask(gt, min_depth, max_depth, crop)
    rows = []
    for p, g, m in zip(pred, gt, mask):
        if not bool(m.any()):
            rows.append(torch.full((len(DEPTH_METRICS),), float("nan"), dtype=torch.float64, device=pred.device))
            continue
        p, g = p[m], g[m]
        ratio = torch.maximum(p / g, g / p)
        d = p.log() - g.log()
        rows.append(torch.stack([
            ((p - g).abs() / g).mean(),
            ((p - g) ** 2 / g).mean(),
            ((p - g) ** 2).mean().sqrt(),
            (d ** 2).mean().sqrt(),
            (p.log10() - g.log10()).abs().mean(),
            (ratio < 1.25).double().mean(),
            (ratio < 1.25 ** 2).double().mean(),
            (ratio < 1.25 ** 3).double().mean(),
            ((d ** 2).mean() - d.mean() ** 2).clamp_min(0).sqrt() * 100,
        ]))
    return torch.stack(rows)
