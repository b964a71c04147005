"""Semantic-segmentation metrics from a confusion matrix: mIoU, pixel accuracy, mean class accuracy.

Conventions (as in mmsegmentation / the Cityscapes benchmark, evaluated over the whole split):

* ``confmat[i, j]`` counts pixels whose ground truth is class ``i`` and prediction class ``j``; pixels whose
  ground truth equals ``ignore_index`` are never counted.
* ``IoU_c = TP_c / (GT_c + Pred_c - TP_c)``; ``Acc_c = TP_c / GT_c``.
* A class absent from both ground truth and prediction has an undefined IoU (NaN) and is left out of the
  mean (nan-mean); a class predicted but absent from the ground truth has IoU 0 and counts. Likewise a class
  absent from the ground truth has NaN accuracy and is left out of ``mean_acc``.
* ``pixel_acc = sum(TP) / sum(GT)``. All three summaries are percentages.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """Confusion matrix (num_classes x num_classes int64, rows = ground truth, columns = prediction).

    ``pred``: predicted class ids (any shape, integer), ``target``: ground truth of the same shape with
    ``ignore_index`` for unlabelled pixels. Computed with one ``bincount`` on the tensors' device.
    """
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have "
                         f"the same shape (take the argmax over classes and resize the scores to the label first)")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("confusion_matrix expects integer class ids; got floating tensors (use scores.argmax(1))")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel():
        bad_t = (target < 0) | (target >= num_classes)
        if bool(bad_t.any()):
            raise ValueError(f"confusion_matrix: ground truth contains ids {sorted(set(target[bad_t].tolist()))[:8]} "
                             f"outside [0, {num_classes}) that are not ignore_index={ignore_index}; check the "
                             f"dataset's label mapping or num_classes")
        bad_p = (pred < 0) | (pred >= num_classes)
        if bool(bad_p.any()):
            raise ValueError(f"confusion_matrix: predictions contain ids outside [0, {num_classes}); the model's "
                             f"number of output channels does not match num_classes={num_classes}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(confmat) -> np.ndarray:
    """IoU per class in [0, 1]; NaN where the class is absent from both ground truth and prediction."""
    cm = np.asarray(confmat.cpu() if isinstance(confmat, torch.Tensor) else confmat, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(1) + cm.sum(0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def segmentation_metrics(confmat, class_names: Sequence[str] | None = None) -> dict:
    """Summaries of a confusion matrix (see module docstring for the conventions).

    Returns ``{'mIoU', 'pixel_acc', 'mean_acc'}`` as percentages (floats; NaN if nothing was counted),
    ``'IoU'`` and ``'Acc'``: per-class percentages (numpy arrays, NaN for undefined classes), and
    ``'IoU/<name>'`` for every class when ``class_names`` are given.
    """
    cm = np.asarray(confmat.detach().cpu() if isinstance(confmat, torch.Tensor) else confmat, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"segmentation_metrics expects a square confusion matrix; got shape {cm.shape}")
    if class_names is not None and len(class_names) != cm.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix")
    tp = np.diag(cm)
    gt = cm.sum(1)
    iou = per_class_iou(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt > 0, tp / np.maximum(gt, 1), np.nan)
    total = gt.sum()

    def nanmean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) * 100.0 if np.isfinite(x).any() else float("nan")

    out = {
        "mIoU": nanmean(iou),
        "pixel_acc": float(tp.sum() / total) * 100.0 if total > 0 else float("nan"),
        "mean_acc": nanmean(acc),
        "IoU": iou * 100.0,
        "Acc": acc * 100.0,
    }
    if class_names is not None:
        for name, v in zip(class_names, iou):
            out[f"IoU/{name}"] = float(v) * 100.0
    return out
